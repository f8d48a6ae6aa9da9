"""A small, polite, breadth-first crawler.

Same-host links from the seeds, a page budget and a depth limit, robots.txt obeyed
(Protego, including Crawl-delay), a timeout and a byte cap per page. Every HTTP response
is kept in a standard WARC file (warcio) so the extraction can be redone without
refetching; the main text and title of each HTML page come from trafilatura.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import httpx
import pyarrow as pa
import trafilatura
from bs4 import BeautifulSoup
from courlan import normalize_url
from protego import Protego
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from llm_core.crawl.config import CrawlConfig
from llm_core.documents import DOCS_DIR, DOCUMENT_SCHEMA, document_id, write_documents
from llm_core.errors import StageError

STAGE = "crawl"
WARC_FILE = "pages.warc.gz"
HTML_TYPES = ("text/html", "application/xhtml+xml")
# httpx hands us decoded bodies; these headers would describe the wire bytes, not the payload kept.
_WIRE_HEADERS = {"content-encoding", "transfer-encoding", "content-length"}

log = logging.getLogger(__name__)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def canonical_url(url: str) -> str:
    """Normalise a URL (courlan: lower-case host, default port, fragment dropped) so each page is fetched once."""
    url, _ = urldefrag(url)
    try:
        return normalize_url(url)
    except ValueError:
        return url


class PageTooLarge(Exception):
    pass


class NotHtml(Exception):
    """The response is not an HTML page: its body is not downloaded."""


class PageTimeout(Exception):
    """The page took longer than ``timeout_s`` in all (httpx's timeout is per socket read)."""


REDIRECTS = {301, 302, 303, 307, 308}
# Skip reasons that mean "the server could not be reached", which may pass: worth a retry.
TRANSIENT_SKIPS = {"fetch_error", "host_unavailable", "timeout"}


@dataclass
class HostState:
    robots: Protego | None
    delay_s: float
    last_request: float = 0.0
    # Why the host is not crawled at all (robots.txt unreachable or failing), if it is not.
    refused: str | None = None


@dataclass
class CrawlStats:
    fetched: int = 0
    kept: int = 0
    bytes: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


class Crawler:
    def __init__(self, config: CrawlConfig, client: httpx.Client, warc: WARCWriter):
        self.config = config
        self.client = client
        self.warc = warc
        self.hosts: dict[str, HostState] = {}
        self.stats = CrawlStats()

    # -- politeness -------------------------------------------------------------------
    def _host(self, url: str) -> HostState:
        origin = _origin(url)
        if origin not in self.hosts:
            self.hosts[origin] = self._load_robots(origin)
        return self.hosts[origin]

    def _load_robots(self, origin: str) -> HostState:
        """Fetch robots.txt. Missing (4xx) allows everything; unreachable or 5xx allows nothing,
        as Google's crawler does, so a broken server is never hammered."""
        url = f"{origin}/robots.txt"
        try:
            response = self.client.get(url)
        except httpx.HTTPError as exc:
            reason = f"robots.txt unreachable: {type(exc).__name__}: {exc}"
        else:
            unavailable = response.status_code >= 500 or response.status_code == 429  # RFC 9309 2.3.1.4
            reason = f"robots.txt answered HTTP {response.status_code}" if unavailable else None
        if reason:
            log.warning("not crawling %s: %s", origin, reason)
            self.stats.errors.append(f"{origin}: {reason}")
            return HostState(robots=None, delay_s=self.config.delay_s, refused=reason)
        if response.status_code >= 400:
            return HostState(robots=None, delay_s=self.config.delay_s)
        robots = Protego.parse(response.text)
        crawl_delay = robots.crawl_delay(self.config.user_agent) or 0.0
        return HostState(robots=robots, delay_s=max(self.config.delay_s, float(crawl_delay)))

    def refusal(self, url: str) -> str | None:
        """Why ``url`` must not be fetched (a skip reason), or None."""
        host = self._host(url)
        if host.refused:
            return "host_unavailable"
        if host.robots is not None and not host.robots.can_fetch(url, self.config.user_agent):
            return "robots_disallowed"
        return None

    def _wait_turn(self, url: str) -> None:
        host = self._host(url)
        wait = host.last_request + host.delay_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        host.last_request = time.monotonic()

    # -- fetching ---------------------------------------------------------------------
    def fetch(self, url: str) -> tuple[httpx.Response, bytes]:
        """GET an HTML page; the byte cap and the page's time limit are enforced while streaming."""
        self._wait_turn(url)
        deadline = time.monotonic() + self.config.timeout_s
        with self.client.stream("GET", url) as response:
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if response.status_code == 200 and content_type not in HTML_TYPES:
                raise NotHtml(url)
            body = bytearray()
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) > self.config.max_page_bytes:
                    raise PageTooLarge(url)
                if time.monotonic() > deadline:
                    raise PageTimeout(url)
        return response, bytes(body)

    def archive(self, url: str, response: httpx.Response, body: bytes) -> None:
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in _WIRE_HEADERS]
        headers.append(("Content-Length", str(len(body))))
        http_headers = StatusAndHeaders(
            f"{response.status_code} {response.reason_phrase}", headers, protocol="HTTP/1.1"
        )
        record = self.warc.create_warc_record(url, "response", payload=BytesIO(body), http_headers=http_headers)
        self.warc.write_record(record)

    # -- the crawl --------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        """Breadth-first from the seeds. Redirects are not followed blindly: their target joins
        the frontier at the same depth, so it passes the same-host, robots.txt and seen checks."""
        seeds = [canonical_url(s) for s in self.config.seeds]
        seed_hosts = {urlsplit(s).netloc for s in seeds}
        frontier: deque[tuple[str, int]] = deque((s, 0) for s in seeds)
        seen: set[str] = set(seeds)
        documents: list[dict[str, Any]] = []

        def enqueue(link: str, depth: int) -> None:
            if link in seen:
                return
            if self.config.same_host and urlsplit(link).netloc not in seed_hosts:
                self.stats.skip("other_host")
                return
            seen.add(link)
            frontier.append((link, depth))

        while frontier and self.stats.fetched < self.config.max_pages:
            url, depth = frontier.popleft()
            refusal = self.refusal(url)
            if refusal:
                self.stats.skip(refusal)
                continue
            try:
                response, body = self.fetch(url)
            except PageTooLarge:
                self.stats.skip("too_large")
                continue
            except NotHtml:
                self.stats.skip("not_html")
                continue
            except PageTimeout:
                self.stats.skip("timeout")
                self.stats.errors.append(f"{url}: took longer than {self.config.timeout_s} s")
                continue
            except httpx.HTTPError as exc:
                self.stats.skip("fetch_error")
                self.stats.errors.append(f"{url}: {type(exc).__name__}: {exc}")
                continue
            self.stats.fetched += 1
            self.stats.bytes += len(body)
            self.archive(url, response, body)
            if self.stats.fetched % 25 == 0:
                log.info("crawl: %d/%d pages fetched, %d kept", self.stats.fetched, self.config.max_pages, self.stats.kept)

            if response.status_code in REDIRECTS and "location" in response.headers:
                self.stats.skip("redirect")
                target = urljoin(url, response.headers["location"])
                if target.startswith(("http://", "https://")):
                    enqueue(canonical_url(target), depth)
                continue
            if response.status_code != 200:
                self.stats.skip(f"http_{response.status_code}")
                continue

            doc = extract_document(body, url)
            if doc is None or len(doc["text"]) < self.config.min_text_chars:
                self.stats.skip("too_little_text")
            else:
                documents.append(doc)
                self.stats.kept += 1

            if depth < self.config.max_depth:
                for link in extract_links(body, url):
                    enqueue(link, depth + 1)
        return documents


def extract_links(html: bytes, base_url: str) -> list[str]:
    soup = BeautifulSoup(html, "lxml")
    base = soup.find("base", href=True)
    base_url = urljoin(base_url, base["href"]) if base else base_url
    links = []
    for anchor in soup.find_all("a", href=True):
        href = anchor["href"].strip()
        if not href or href.startswith(("mailto:", "javascript:", "tel:", "#")):
            continue
        absolute = urljoin(base_url, href)
        if absolute.startswith(("http://", "https://")):
            links.append(canonical_url(absolute))
    return links


def extract_document(html: bytes, url: str) -> dict[str, Any] | None:
    """Main text and title with trafilatura; it detects the page's encoding from the bytes,
    so pages that are not UTF-8 are decoded rather than dropped."""
    result = trafilatura.extract(
        html, url=url, output_format="json", with_metadata=True, include_comments=False, favor_precision=False
    )
    if not result:
        return None
    meta = json.loads(result)
    text = (meta.get("text") or "").strip()
    if not text:
        return None
    return {
        "id": document_id(url),
        "url": url,
        "source": "crawl",
        "fetched_at": datetime.now(timezone.utc),
        "text": text,
        "title": meta.get("title"),
        "lang": None,
        "lang_score": None,
    }


def crawl(config: CrawlConfig, out_dir: Path) -> dict[str, Any]:
    """Crawl from ``config.seeds``; write ``pages.warc.gz`` and ``docs/`` into ``out_dir``; return stats."""
    if not config.seeds:
        raise StageError(STAGE, "no seed URLs: set crawl.seeds in the config")
    headers = {"User-Agent": config.user_agent}
    with (
        httpx.Client(headers=headers, timeout=config.timeout_s, follow_redirects=False) as client,
        open(out_dir / WARC_FILE, "wb") as warc_file,
    ):
        crawler = Crawler(config, client, WARCWriter(warc_file, gzip=True))
        documents = crawler.run()
    stats = crawler.stats
    skipped = ", ".join(f"{reason}={count}" for reason, count in stats.skipped.items())
    if stats.fetched == 0:
        detail = "; ".join(stats.errors[:5]) or skipped
        raise StageError(
            STAGE, f"none of the {len(config.seeds)} seed URL(s) could be fetched ({detail}); check crawl.seeds "
            "and that the site is up", retryable=bool(stats.skipped) and set(stats.skipped) <= TRANSIENT_SKIPS,
        )
    if not documents:
        raise StageError(
            STAGE, f"fetched {stats.fetched} page(s) but kept no document (pages skipped, by reason: {skipped}); "
            f"check crawl.seeds, or lower crawl.min_text_chars ({config.min_text_chars})",
        )
    write_documents(pa.Table.from_pylist(documents, schema=DOCUMENT_SCHEMA), out_dir / DOCS_DIR)
    return {
        "pages_fetched": stats.fetched,
        "docs_out": stats.kept,
        "bytes_fetched": stats.bytes,
        "chars_out": sum(len(d["text"]) for d in documents),
        "skipped": stats.skipped,
        "errors": stats.errors[:20],
    }
