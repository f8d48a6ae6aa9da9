"""Fixtures: real data from ../shared/data, a real web site on 127.0.0.1, real Spark/Prefect/MLflow.

Prefect reads its settings at import, so its home and result store are pointed at a
temporary directory here, before any test module imports it.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

_STATE = Path(tempfile.mkdtemp(prefix="llmpipe-tests-"))
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(_STATE / "prefect" / "storage")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
os.environ["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"
os.environ["DO_NOT_TRACK"] = "true"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("PREFECT_API_URL", None)

REPO = Path(__file__).resolve().parents[1]


def skip_or_fail(reason: str) -> None:
    """Skip a test whose real data is absent; under CI (``CI=true``) fail instead, so a green
    CI run means the end-to-end tests ran."""
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"{reason}; CI must run the tests on real data", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder (``$LLMPIPE_SHARED_DATA``, default ``../shared/data``); skip without it."""
    # Resolved: a symlinked shared folder gives the same paths as the stages, which resolve theirs.
    path = Path(os.environ.get("LLMPIPE_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()
    if not (path / "README.md").is_file():
        skip_or_fail(f"shared data not found at {path} (set LLMPIPE_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def tokenized(shared_data: Path, tmp_path_factory):
    """Shakespeare through the tokenizer stage, built once per setting for the whole session:
    ``tokenized(vocab_size=512, kind=...)`` is the tokenizer output folder (tokenizer.json,
    shards/). Tests read it and never write into it."""
    from helpers import tokenized_shakespeare
    from llm_core.tokenizer.config import TokenizerConfig

    made: dict[str, Path] = {}

    def get(**settings) -> Path:
        key = json.dumps(settings, sort_keys=True)
        if key not in made:
            made[key], _, _ = tokenized_shakespeare(shared_data, tmp_path_factory.mktemp("tokenized"),
                                                    TokenizerConfig(**settings))
        return made[key]

    return get


@pytest.fixture(scope="session")
def wikitext(shared_data: Path) -> Path:
    """WikiText-2's raw test text (the evaluation tests' external set)."""
    path = shared_data / "text_wikitext2_raw_test" / "wikitext-test.txt"
    if not path.is_file():
        skip_or_fail(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def html_pages(shared_data: Path) -> list[Path]:
    pages = sorted((shared_data / "html_trafilatura" / "cache").glob("*.html"))
    if not pages:
        skip_or_fail("html_trafilatura/cache has no pages")
    return pages


# A German page in ISO-8859-1, served with that charset: the crawler must not drop or garble it.
LATIN1_PAGE = (
    "<html><head><meta charset='iso-8859-1'><title>Grüße aus Köln</title></head><body><article>"
    "<h1>Ein Morgen am Rhein</h1>"
    "<p>Die Straßenbahn fährt über die Brücke, während die Möwen über dem Rhein kreisen.</p>"
    "<p>Überall duftet es nach frischem Gebäck, und die Bäckerei öffnet schon früh am Morgen.</p>"
    "<p>Am Ufer üben zwei Straßenmusiker ein Stück, das nach Sommer und großen Plänen klingt.</p>"
    "<p>Später füllen sich die Cafés; man bestellt Kaffee, blättert in der Zeitung und plaudert über das Wetter.</p>"
    "<p>Gegen Mittag wird es ruhiger, nur die Fähre pendelt unermüdlich zwischen den beiden Ufern hin und her.</p>"
    "</article></body></html>"
).encode("iso-8859-1")


class Site:
    """A small real web site: an index linking real pages, a robots.txt, a non-UTF-8 page, a huge page."""

    def __init__(self, pages: list[Path]):
        self.pages = {f"/pages/{p.name}": p for p in pages}
        self.requests: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                site.requests.append(self.path)
                if self.path == "/slow.html":
                    return self.drip()
                body, ctype, status = site.route(self.path)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                if status in (301, 302):
                    self.send_header("Location", body.decode())
                self.end_headers()
                self.wfile.write(body)

            def drip(self):
                """A page that sends one small chunk a second: each read is quick, the page is not."""
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                try:
                    for _ in range(8):
                        self.wfile.write(b"<p>still coming</p>")
                        self.wfile.flush()
                        time.sleep(1)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def route(self, path: str) -> tuple[bytes, str, int]:
        if path == "/robots.txt":
            return b"User-agent: *\nDisallow: /private/\n", "text/plain", 200
        if path == "/":
            links = "".join(f'<li><a href="{p}">{p}</a></li>' for p in self.pages)
            links += '<li><a href="/private/secret.html">secret</a></li><li><a href="/latin1.html">latin1</a></li>'
            links += '<li><a href="/huge.html">huge</a></li><li><a href="/missing.html">missing</a></li>'
            links += '<li><a href="https://example.com/elsewhere">other host</a></li>'
            links += '<li><a href="/go/first">redirect</a></li><li><a href="/go/away">redirect away</a></li>'
            links += '<li><a href="/go/private">redirect private</a></li>'
            return f"<html><body><h1>Index</h1><ul>{links}</ul></body></html>".encode(), "text/html", 200
        if path in self.pages:
            return self.pages[path].read_bytes(), "text/html", 200
        if path == "/go/first":  # redirect bodies here carry the Location
            return "/latin1.html".encode(), "text/plain", 302
        if path == "/go/away":
            return b"https://example.com/moved", "text/plain", 301
        if path == "/go/private":
            return b"/private/moved.html", "text/plain", 302
        if path.startswith("/private/"):
            return b"<html><body>must never be fetched</body></html>", "text/html", 200
        if path == "/latin1.html":
            return LATIN1_PAGE, "text/html; charset=iso-8859-1", 200
        if path == "/busy.html":  # a server overloaded for a moment
            return b"try again later", "text/plain", 503
        if path == "/huge.html":
            return b"<html><body>" + b"<p>word </p>" * 400_000 + b"</body></html>", "text/html", 200
        return b"not found", "text/plain", 404

    def __enter__(self) -> "Site":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def site(html_pages: list[Path]):
    with Site(html_pages[:30]) as s:
        yield s


@pytest.fixture(scope="session")
def spark_config():
    from llm_core.config import SparkConfig

    # Adaptive query execution re-plans each shuffle: on test-sized data that doubles the
    # dedupe stage's jobs and time (10 s vs 20 s a run) for nothing to gain.
    return SparkConfig(master="local[2]", conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2",
                                                "spark.sql.adaptive.enabled": "false"})


@pytest.fixture(scope="session")
def prefect_api():
    """A real Prefect API (temporary database) for the whole test session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def unused_port() -> int:
    return free_port()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def spark_standalone(tmp_path_factory):
    """A real Spark standalone cluster on 127.0.0.1: one master and one worker (2 cores,
    2 GB; tests/servers.py); yields the master URL."""
    from servers import spark_cluster

    with spark_cluster(tmp_path_factory.mktemp("spark-standalone")) as url:
        yield url
