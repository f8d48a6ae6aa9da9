"""Web sites on 127.0.0.1 for the crawler's tests: several hosts of real pages, and a hostile one.

Each server logs every request on its own side (path, start and end time, whether the whole
response was sent), so politeness and "fetched once" are measured where a site owner would
measure them, not taken from the crawler's word.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


@dataclass
class Hit:
    path: str
    start: float
    end: float = 0.0
    served: bool = False  # the whole response was written


class LoggingServer:
    """A threading HTTP server whose ``route(handler)`` answers; every request is logged as a Hit.
    ``gate`` (an Event) holds requests beyond ``hold_after`` served responses until it is set."""

    def __init__(self, route, shared: "Concurrency | None" = None):
        self.route = route
        self.hits: list[Hit] = []
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        self.shared = shared
        self.hold_after: int | None = None
        self.gate = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle on, each keep-alive response
            # waits ~40 ms for the client's delayed ACK.
            disable_nagle_algorithm = True

            def do_GET(self):  # noqa: N802 (http.server's naming)
                self.path = unquote(self.path)  # the pages' names are not all ASCII
                hit = Hit(self.path, time.monotonic())
                with server.lock:
                    server.hits.append(hit)
                    if server.hold_after is not None and server.served_pages() >= server.hold_after:
                        holding = True
                    else:
                        holding = False
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                if server.shared:
                    server.shared.enter()
                try:
                    if holding:
                        server.gate.wait(60)
                        self.close_connection = True
                        return
                    route(self)
                    hit.served = True
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    hit.end = time.monotonic()
                    with server.lock:
                        server.active -= 1
                    if server.shared:
                        server.shared.leave()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def served_pages(self) -> int:
        return sum(1 for h in self.hits if h.served and h.path != "/robots.txt")

    def paths(self, served_only: bool = True) -> list[str]:
        return [h.path for h in self.hits if h.served or not served_only]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


class Concurrency:
    """Requests in flight over several servers at once (the crawl's global limit)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    def enter(self):
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def leave(self):
        with self.lock:
            self.active -= 1


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", content_type: str = "text/html",
         headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def page(title: str, links: list[str] = (), paragraphs: int = 4, extra_head: str = "") -> bytes:
    text = "".join(f"<p>{title}, paragraph {i}: the river runs past the old mill, where the miller grinds "
                   f"the grain the farmers bring in from the fields every autumn.</p>" for i in range(paragraphs))
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (f"<html><head><title>{title}</title>{extra_head}</head><body><article><h1>{title}</h1>{text}"
            f"<ul>{anchors}</ul></article></body></html>").encode()


class MultiHostSite:
    """One server per robots.txt in ``robots``, sharing the real ``pages`` round robin (or host i
    serving ``pages[i]`` when given a list per host); each index links its pages and the other
    hosts' indexes. ``think_s`` keeps each request open a moment so that concurrent requests
    overlap and can be counted."""

    def __init__(self, pages: list[Path] | list[list[Path]], robots: list[str], think_s: float = 0.02):
        self.concurrency = Concurrency()
        if not isinstance(pages[0], list):
            pages = [pages[i::len(robots)] for i in range(len(robots))]
        self.pages = [{f"/pages/{path.name}": path for path in host_pages} for host_pages in pages]
        self.robots = robots
        self.think_s = think_s
        self.servers = [LoggingServer(self._route(i), self.concurrency) for i in range(len(robots))]

    def _route(self, i: int):
        def route(handler):
            time.sleep(self.think_s)
            path = handler.path
            if path == "/robots.txt":
                return send(handler, 200, self.robots[i].encode(), "text/plain")
            if path == "/":
                links = list(self.pages[i]) + [s.url for s in self.servers if s is not self.servers[i]]
                links += ["/private/secret.html"]
                return send(handler, 200, page(f"Host {i}", links))
            if path in self.pages[i]:
                return send(handler, 200, self.pages[i][path].read_bytes())
            return send(handler, 404, b"not found", "text/plain")
        return route

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def expected(self, i: int) -> set[str]:
        return {"/", *self.pages[i]}

    def __enter__(self):
        for s in self.servers:
            s.__enter__()
        return self

    def __exit__(self, *exc):
        for s in self.servers:
            s.__exit__(*exc)


class FaultSite:
    """Every way a page can go wrong, linked from one index. Counters of attempts per path
    let a fault pass after a first failure (500 then 200, 429 then 200)."""

    LINKS = ["/slow", "/flaky", "/throttle", "/reset", "/loop/a", "/chain/0", "/big", "/legacy", "/trap/1",
             "/noindex", "/nofollow", "/xrobots", "/notes.pdf", "/gone", "http://10.0.0.1/internal",
             "http://169.254.169.254/latest/meta-data/", "ftp://127.0.0.1/file", "mailto:a@b.c"]

    def __init__(self, slow_s: float = 3.0, retry_after_s: int = 1, max_bytes: int = 100_000):
        self.attempts: dict[str, int] = {}
        self.slow_s = slow_s
        self.retry_after_s = retry_after_s
        self.max_bytes = max_bytes
        self.server = LoggingServer(self.route)

    def route(self, h):
        path = h.path
        n = self.attempts[path] = self.attempts.get(path, 0) + 1
        if path == "/robots.txt":
            return send(h, 200, b"User-agent: *\nAllow: /\n", "text/plain")
        if path == "/":
            return send(h, 200, page("Faults", self.LINKS))
        if path == "/slow":
            time.sleep(self.slow_s)
            return send(h, 200, page("Slow"))
        if path == "/flaky":
            return send(h, 500, b"oops", "text/plain") if n == 1 else send(h, 200, page("Flaky"))
        if path == "/throttle":
            if n == 1:
                return send(h, 429, b"slow down", "text/plain", {"Retry-After": str(self.retry_after_s)})
            return send(h, 200, page("Throttled"))
        if path == "/reset":  # an abortive close: the client sees a connection reset
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
            h.connection.close()
            raise ConnectionResetError
        if path.startswith("/loop/"):
            return send(h, 302, b"", headers={"Location": "/loop/b" if path.endswith("a") else "/loop/a"})
        if path.startswith("/chain/"):
            return send(h, 302, b"", headers={"Location": f"/chain/{int(path.rsplit('/', 1)[1]) + 1}"})
        if path == "/big":
            return send(h, 200, b"<html><body>" + b"<p>word</p>" * (self.max_bytes // 5) + b"</body></html>")
        if path == "/legacy":
            body = page("Grüße aus Köln: Straßenbahn über die Brücke").decode().encode("cp1252")
            return send(h, 200, body, "text/html; charset=windows-1252")
        if path.startswith("/trap/"):  # an endless calendar-like link trap
            k = int(path.rsplit("/", 1)[1])
            return send(h, 200, page(f"Trap {k}", [f"/trap/{k + 1}", f"/trap/{k + 2}"]))
        if path == "/noindex":
            return send(h, 200, page("No index", ["/from-noindex"], extra_head='<meta name="robots" content="noindex">'))
        if path == "/nofollow":
            return send(h, 200, page("No follow", ["/only-from-nofollow"],
                                     extra_head='<meta name="robots" content="nofollow">'))
        if path == "/xrobots":
            return send(h, 200, page("Header"), headers={"X-Robots-Tag": "noarchive"})
        if path == "/notes.pdf":
            return send(h, 200, b"%PDF-1.4 ...", "application/pdf")
        if path == "/from-noindex":
            return send(h, 200, page("Reached through a noindex page"))
        return send(h, 404, b"not found", "text/plain")

    def __enter__(self):
        self.server.__enter__()
        return self

    def __exit__(self, *exc):
        self.server.__exit__(*exc)
