"""robots.txt per RFC 9309: redirects followed (at most 5), the 500 KiB parsing limit, failures.

Each test runs its own small web site on 127.0.0.1 whose robots.txt answers as the test needs.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llm_core.crawl.config import CrawlConfig
from llm_core.crawl.robots import ROBOTS_MAX_BYTES, ROBOTS_MAX_REDIRECTS
from llm_core.errors import StageError
from helpers import crawl_pages

PARAGRAPHS = "".join(
    f"<p>Paragraph {i}: the river runs past the old mill, where the miller grinds the grain "
    f"that the farmers bring in from the fields every autumn.</p>" for i in range(4)
)


def page(title: str, links: list[str] = ()) -> bytes:
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>"
            f"{PARAGRAPHS}<ul>{anchors}</ul></article></body></html>").encode()


class RobotsSite:
    """A web site whose index links /ok.html, /private/, /early/ and /late/ pages, and whose
    other answers (robots.txt and its redirects) come from ``routes``: path -> (status, headers, body).
    A body may be a callable writing to the socket itself (a large robots.txt)."""

    LINKS = ["/ok.html", "/private/a.html", "/early/a.html", "/late/a.html"]

    def __init__(self, routes: dict):
        self.routes = routes
        self.requests: list[str] = []
        self.sent: dict[str, int] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                site.requests.append(self.path)
                if self.path in site.routes:
                    status, headers, body = site.routes[self.path]
                elif self.path == "/":
                    status, headers, body = 200, {"Content-Type": "text/html"}, page("Index", site.LINKS)
                elif self.path.endswith(".html"):
                    status, headers, body = 200, {"Content-Type": "text/html"}, page(self.path)
                else:
                    status, headers, body = 404, {"Content-Type": "text/plain"}, b"not found"
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if callable(body):
                    self.end_headers()
                    body(self, site)
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "RobotsSite":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def redirect(location: str, status: int = 301) -> tuple[int, dict, bytes]:
    return status, {"Location": location, "Content-Type": "text/plain"}, b"moved"


def robots(text: str) -> tuple[int, dict, bytes]:
    return 200, {"Content-Type": "text/plain"}, text.encode()


def run_crawl(site: RobotsSite, tmp_path, **overrides):
    config = CrawlConfig(seeds=[site.url], max_pages=20, max_depth=1, timeout_s=5, allow_private=["127.0.0.1"],
                         per_host_concurrency=1, **overrides)
    return crawl_pages(config, tmp_path)


def test_a_redirected_robots_txt_is_followed_and_obeyed(tmp_path):
    # The redirect's own body would allow everything: the target's rules must be the ones used.
    routes = {"/robots.txt": redirect("/real-robots.txt"),
              "/real-robots.txt": robots("User-agent: *\nDisallow: /private/\n")}
    with RobotsSite(routes) as site:
        stats, urls = run_crawl(site, tmp_path)
    assert site.requests[:2] == ["/robots.txt", "/real-robots.txt"]
    assert not any(p.startswith("/private/") for p in site.requests), "the redirected robots.txt must be obeyed"
    assert stats["skipped"]["robots_disallowed"] == 1
    assert site.url + "ok.html" in urls


def test_a_robots_redirect_to_another_host_is_followed(tmp_path):
    with RobotsSite({"/robots.txt": robots("User-agent: *\nDisallow: /private/\n")}) as rules:
        with RobotsSite({"/robots.txt": redirect(rules.url + "robots.txt", status=308)}) as site:
            stats, _ = run_crawl(site, tmp_path)
    assert rules.requests == ["/robots.txt"]
    assert not any(p.startswith("/private/") for p in site.requests)
    assert stats["skipped"]["robots_disallowed"] == 1


def test_more_than_five_robots_redirects_mean_unavailable_so_all_is_allowed(tmp_path):
    # /robots.txt -> /r1 -> ... -> /r6 (six redirects); /r6 would disallow everything.
    hops = ["/robots.txt"] + [f"/r{i}" for i in range(1, 7)]
    routes = {src: redirect(dst.lstrip("/")) for src, dst in zip(hops, hops[1:])}  # relative Locations
    routes["/r6"] = robots("User-agent: *\nDisallow: /\n")
    with RobotsSite(routes) as site:
        stats, urls = run_crawl(site, tmp_path)
    robots_requests = [p for p in site.requests if p in routes]
    assert robots_requests == hops[:ROBOTS_MAX_REDIRECTS + 1], "stop after five redirect hops"
    assert "/r6" not in site.requests
    assert "robots_disallowed" not in stats["skipped"]
    assert "/private/a.html" in site.requests and "/late/a.html" in site.requests
    assert len(urls) == 5  # the index and its four pages
    assert not stats["errors"]


def test_five_robots_redirects_are_still_followed(tmp_path):
    hops = ["/robots.txt"] + [f"/r{i}" for i in range(1, 6)]
    routes = {src: redirect(dst) for src, dst in zip(hops, hops[1:])}
    routes["/r5"] = robots("User-agent: *\nDisallow: /private/\n")
    with RobotsSite(routes) as site:
        stats, _ = run_crawl(site, tmp_path)
    assert [p for p in site.requests if p in routes] == hops
    assert stats["skipped"]["robots_disallowed"] == 1
    assert not any(p.startswith("/private/") for p in site.requests)


def big_robots(total_bytes: int):
    """A robots.txt of about ``total_bytes``: an early rule, comments past the 500 KiB limit, a late
    rule, then comments. Records in ``site.sent`` how much of it the server wrote before the client left."""
    head = b"User-agent: *\nDisallow: /early/\n"
    filler_line = b"# " + b"x" * 97 + b"\n"  # 100 bytes
    filler = filler_line * ((ROBOTS_MAX_BYTES + 4096) // len(filler_line))
    late = b"Disallow: /late/\n"
    chunk = filler_line * 655  # about 64 KiB
    chunks = (total_bytes - len(head) - len(filler) - len(late)) // len(chunk)
    assert len(head) + len(filler) > ROBOTS_MAX_BYTES

    def write(handler, site):
        sent = 0
        try:
            for part in (head, filler, late):
                handler.wfile.write(part)
                sent += len(part)
            for _ in range(chunks):
                handler.wfile.write(chunk)
                sent += len(chunk)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        site.sent["/robots.txt"] = sent

    return len(head) + len(filler) + len(late) + chunks * len(chunk), write


def test_rules_past_the_500_kib_parsing_limit_are_ignored(tmp_path):
    # Large enough that socket buffers cannot swallow it all: the server sees the client leave.
    size, write = big_robots(64_000_000)
    routes = {"/robots.txt": (200, {"Content-Type": "text/plain", "Content-Length": str(size)}, write)}
    with RobotsSite(routes) as site:
        started = time.monotonic()
        stats, urls = run_crawl(site, tmp_path)
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 5
        while "/robots.txt" not in site.sent and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "/early/a.html" not in site.requests, "the rule within the limit is obeyed"
    assert "/late/a.html" in site.requests, "the rule past the limit is ignored"
    assert site.url + "late/a.html" in urls
    assert stats["skipped"]["robots_disallowed"] == 1
    assert elapsed < 5
    # The client closed the connection after the limit: the server could not send it all.
    assert site.sent["/robots.txt"] < size // 4


def test_a_robots_redirect_ending_in_a_server_error_refuses_the_host(tmp_path):
    routes = {"/robots.txt": redirect("/moved/robots.txt", status=302),
              "/moved/robots.txt": (503, {"Content-Type": "text/plain"}, b"down for maintenance")}
    with RobotsSite(routes) as site:
        with pytest.raises(StageError, match=r"none of the 1 seed URL\(s\) gave a page.*HTTP 503") as info:
            run_crawl(site, tmp_path)
    assert site.requests == ["/robots.txt", "/moved/robots.txt"], "nothing is crawled on a refused host"
    assert "redirected to" in str(info.value)
    assert info.value.retryable


def test_a_robots_redirect_ending_in_a_404_allows_everything(tmp_path):
    routes = {"/robots.txt": redirect("/gone.txt")}
    with RobotsSite(routes) as site:
        stats, urls = run_crawl(site, tmp_path)
    assert "/gone.txt" in site.requests
    assert "/private/a.html" in site.requests
    assert len(urls) == 5


def test_a_robots_txt_with_a_byte_order_mark_is_obeyed(tmp_path):
    routes = {"/robots.txt": (200, {"Content-Type": "text/plain"},
                              "\ufeffUser-agent: *\nDisallow: /private/\n".encode("utf-8"))}
    with RobotsSite(routes) as site:
        stats, _ = run_crawl(site, tmp_path)
    assert not any(p.startswith("/private/") for p in site.requests)
