"""A small, polite, breadth-first crawler: the frontier loop and ``crawl()``.

Same-host links from the seeds, a page budget and a depth limit, a timeout and a byte cap
per page. This module only decides what to fetch next and fetches it; the rules on what
may be fetched and when (robots.txt per RFC 9309, Crawl-delay) live in ``robots.py``, and
what is kept of a page (WARC record, links, main text) in ``extract.py``, so each can be
read and tested on its own.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pyarrow as pa
from warcio.warcwriter import WARCWriter

from llm_core.crawl.config import CrawlConfig
from llm_core.crawl.extract import archive, canonical_url, extract_document, extract_links
from llm_core.crawl.robots import REDIRECTS, Politeness
from llm_core.documents import DOCS_DIR, DOCUMENT_SCHEMA, write_documents
from llm_core.errors import StageError

STAGE = "crawl"
WARC_FILE = "pages.warc.gz"
HTML_TYPES = ("text/html", "application/xhtml+xml")

log = logging.getLogger(__name__)


class PageTooLarge(Exception):
    pass


class NotHtml(Exception):
    """The response is not an HTML page: its body is not downloaded."""


class PageTimeout(Exception):
    """The page took longer than ``timeout_s`` in all (httpx's timeout is per socket read)."""


# Skip reasons that mean "the server could not be reached or is overloaded", which may pass: worth a retry.
TRANSIENT_SKIPS = {"fetch_error", "host_unavailable", "timeout", "http_429"}


def is_transient_skip(reason: str) -> bool:
    return reason in TRANSIENT_SKIPS or (reason.startswith("http_5") and len(reason) == 8)


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
        self.stats = CrawlStats()
        self.politeness = Politeness(config, client, self.stats.errors)

    def refusal(self, url: str) -> str | None:
        """Why ``url`` must not be fetched (a skip reason), or None."""
        return self.politeness.refusal(url)

    # -- fetching ---------------------------------------------------------------------
    def fetch(self, url: str) -> tuple[httpx.Response, bytes]:
        """GET an HTML page; the byte cap and the page's time limit are enforced while streaming."""
        self.politeness.wait_turn(url)
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
            archive(self.warc, url, response, body)
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


def all_transient(skipped: dict[str, int]) -> bool:
    """Every page was lost to a failure that may pass (unreachable, timed out, 5xx, 429)."""
    return bool(skipped) and all(is_transient_skip(reason) for reason in skipped)


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
            "and that the site is up", retryable=all_transient(stats.skipped),
        )
    if not documents:
        # A seed answering 503 or 429 (a site down for a moment) may answer next time: worth a retry.
        raise StageError(
            STAGE, f"fetched {stats.fetched} page(s) but kept no document (pages skipped, by reason: {skipped}); "
            f"check crawl.seeds, or lower crawl.min_text_chars ({config.min_text_chars})",
            retryable=all_transient(stats.skipped),
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
