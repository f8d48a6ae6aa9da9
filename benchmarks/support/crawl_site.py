"""The multi-host web site that benchmarks/crawl.py crawls, served from a process of its own.

Run as a script (``python crawl_site.py --hosts 6``) it binds one threading HTTP/1.1 server per
host on its own loopback address (127.0.0.2, 127.0.0.3, ...: Linux routes all of 127/8 to
``lo``), all on one port, prints one JSON line ``{"port": ..., "hosts": [...]}`` once every
server listens, and serves until its stdin is closed. A process of its own, so the server's
Python does not share a GIL with the crawler being measured (it does share the machine's cores).

The pages (``load_pages``): the real saved pages of trafilatura's test sets in the shared
data, ``html_trafilatura/cache/*.html`` (110) and ``html_trafilatura/eval/*.html.gz`` (923,
decompressed in memory), ~140 KB each, less the few whose ``<meta name="robots">`` says
noindex / nofollow / noarchive / none or that carry a ``<meta http-equiv="refresh">``: our
crawler honours those and Scrapy does not, so keeping them would give the two crawlers
different link graphs.

Each host serves every page once, at ``/site/<k>/`` (host ``h``'s page ``k`` is real page
``(k + h * stride) mod N``, so the hosts' same paths differ), untouched except for a small
``<nav>`` inserted before ``</body>``: links to ``/site/<k*F+1>/`` ... ``/site/<k*F+F>/`` of the
same host (a tree of fan-out F, so a page's shortest depth from the index is the same by any
route and breadth-first and depth-first crawls reach the same set) and to page ``k`` of the next
two hosts. ``/`` (the index) links to ``/site/0/``, the other hosts' indexes and ``/private/``.

robots.txt: ``Allow: /$``, ``Allow: /site/*/$``, ``Disallow: /``. The real pages keep their own
links; per page ~95 lead to other sites (out of scope for both crawlers), ~46 are
root-relative (``/about``, ``/news/...``) and so disallowed, and ~0.9 are relative links that
end in ``/`` and are allowed: those are the only 404s (a few per cent of the fetches).
Serving the pages at ``/site/<k>.html`` would let relative ``*.html`` links through instead
(slightly more), so the folder form was chosen; the pages' links are not rewritten, so link
extraction and the robots checks see the pages' real link load.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import re
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROBOTS = b"User-agent: *\nAllow: /$\nAllow: /site/*/$\nDisallow: /\n"
PAGE_PATH = re.compile(r"^/site/(\d+)/$")
_META_ROBOTS = re.compile(rb"<meta[^>]+name\s*=\s*[\"']?robots[^>]*>", re.I)
_BLOCKING = re.compile(rb"noindex|nofollow|noarchive|\bnone\b", re.I)
_REFRESH = re.compile(rb"<meta[^>]+http-equiv\s*=\s*[\"']?refresh", re.I)
_BODY_END = re.compile(rb"</body\s*>", re.I)


def host_ips(n: int) -> list[str]:
    return [f"127.0.0.{2 + i}" for i in range(n)]


def followable(html: bytes) -> bool:
    """No meta robots directive that only one of the two crawlers would honour, no meta refresh."""
    if _REFRESH.search(html):
        return False
    return not any(_BLOCKING.search(tag) for tag in _META_ROBOTS.findall(html))


def load_pages(data: Path) -> list[bytes]:
    pages = []
    for path in sorted(glob.glob(str(data / "html_trafilatura/cache/*.html"))):
        pages.append(Path(path).read_bytes())
    for path in sorted(glob.glob(str(data / "html_trafilatura/eval/*.html.gz"))):
        pages.append(gzip.decompress(Path(path).read_bytes()))
    return [page for page in pages if followable(page)]


@dataclass
class Site:
    pages: list[bytes]
    hosts: list[str]
    port: int
    fanout: int = 8

    def __post_init__(self):
        # Where each page's </body> is (the last one), or its end: the nav goes there.
        self.cuts = []
        for page in self.pages:
            ends = list(_BODY_END.finditer(page))
            self.cuts.append(ends[-1].start() if ends else len(page))
        self.stride = max(1, len(self.pages) // max(1, len(self.hosts)))

    def url(self, h: int, path: str = "/") -> str:
        return f"http://{self.hosts[h % len(self.hosts)]}:{self.port}{path}"

    def nav(self, h: int, k: int) -> bytes:
        n = len(self.pages)
        links = [f"/site/{child}/" for child in range(k * self.fanout + 1, k * self.fanout + self.fanout + 1)
                 if child < n]
        links += [self.url(h + step, f"/site/{k}/") for step in (1, 2) if step < len(self.hosts)]
        anchors = "".join(f'<li><a href="{href}">more</a></li>' for href in links)
        return f"<nav><ul>{anchors}</ul></nav>".encode()

    def index(self, h: int) -> bytes:
        links = ["/site/0/", "/private/"] + [self.url(i) for i in range(len(self.hosts)) if i != h]
        anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
        return f"<html><head><title>Host {h}</title></head><body><ul>{anchors}</ul></body></html>".encode()

    def answer(self, h: int, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) of ``path`` on host ``h``."""
        if path == "/robots.txt":
            return 200, "text/plain", ROBOTS
        if path == "/":
            return 200, "text/html", self.index(h)
        match = PAGE_PATH.match(path)
        if match and int(match.group(1)) < len(self.pages):
            k = int(match.group(1))
            i = (k + h * self.stride) % len(self.pages)
            page, cut = self.pages[i], self.cuts[i]
            return 200, "text/html", page[:cut] + self.nav(h, k) + page[cut:]
        return 404, "text/plain", b"not found"


def handler_for(site: Site, h: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real server
        # Headers and body are two writes: with Nagle on, each keep-alive response would wait
        # ~40 ms for the client's delayed ACK.
        disable_nagle_algorithm = True

        def do_GET(self):  # noqa: N802 (http.server's naming)
            status, content_type, body = site.answer(h, self.path)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def log_message(self, *args):
            pass

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def bind(site_pages: list[bytes], n_hosts: int, fanout: int, port: int = 0,
         tries: int = 20) -> tuple[Site, list[Server]]:
    """One server per host, all on one port (the first free one on 127.0.0.2 that is free on all)."""
    ips = host_ips(n_hosts)
    for _ in range(tries):
        servers: list[Server] = []
        try:
            first = Server((ips[0], port), BaseHTTPRequestHandler)
            chosen = first.server_address[1]
            servers.append(first)
            for ip in ips[1:]:
                servers.append(Server((ip, chosen), BaseHTTPRequestHandler))
        except OSError:
            for server in servers:
                server.server_close()
            if port:
                raise
            continue
        site = Site(site_pages, ips, chosen, fanout)
        for h, server in enumerate(servers):
            server.RequestHandlerClass = handler_for(site, h)
        return site, servers
    raise OSError("no port free on every host address")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True, help="the shared data folder")
    parser.add_argument("--hosts", type=int, default=6)
    parser.add_argument("--fanout", type=int, default=8)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if not 1 <= args.hosts <= 250:
        sys.exit("--hosts: 1 to 250")
    pages = load_pages(args.data)
    if not pages:
        sys.exit(f"no pages under {args.data / 'html_trafilatura'}")
    site, servers = bind(pages, args.hosts, args.fanout, args.port)
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"port": site.port, "hosts": site.hosts, "pages_per_host": len(pages),
                      "page_bytes": sum(map(len, pages)), "fanout": site.fanout,
                      "robots": ROBOTS.decode()}), flush=True)
    sys.stdin.read()  # the parent closes our stdin (or dies): stop
    for server in servers:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
