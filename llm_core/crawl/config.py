"""The crawl stage's settings (``crawl:`` in the pipeline YAML).

One stage collects documents from three kinds of source, which a config may mix:
``seeds`` (a live, polite crawl), ``warc`` (WARC files such as Common Crawl segments) and
``local`` (folders of HTML or text files, JSONL or Parquet). Every source ends in the same
documents schema with its ``source`` (crawl / warc / local), so later stages do not care.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from llm_core.freshness import FreshSection
from llm_core.section import Section

HTML_TYPES = ("text/html", "application/xhtml+xml")


class LocalCorpus(Section):
    """A local corpus: ``path`` is a file, a folder (every file under it) or a glob."""

    path: str
    # html: one page per file (extracted like a crawled page); text: one document per file;
    # jsonl / parquet: one document per row, its text in ``text_field``.
    format: Literal["html", "text", "jsonl", "parquet"]
    text_field: str = "text"
    # Optional row fields for the document's id and url (jsonl / parquet); the file path otherwise.
    id_field: str | None = None
    url_field: str | None = None


class CrawlConfig(FreshSection):
    """Where documents come from and, for a live crawl, how politely to collect them.
    ``refresh`` / ``snapshot`` (llm_core.freshness) say when a crawl of the same seeds is
    collected anew rather than reused."""

    # --- sources ---------------------------------------------------------------------
    seeds: list[str] = Field(default_factory=list)
    # WARC files (gzipped or not), as paths or globs: their HTML response records become documents.
    warc: list[str] = Field(default_factory=list)
    local: list[LocalCorpus] = Field(default_factory=list)

    # --- scope -----------------------------------------------------------------------
    max_pages: int = Field(100, ge=1)
    max_depth: int = Field(3, ge=0)
    # Only follow links to the seeds' hosts; with False, ``allowed_domains`` (if set) bounds the crawl.
    same_host: bool = True
    # Hosts (and their subdomains) links may lead to; empty = no limit beyond ``same_host``.
    allowed_domains: list[str] = Field(default_factory=list)
    # Regular expressions on the full URL: a URL must match one ``include`` (if any) and no ``exclude``.
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    # Pages per host at most (None: ``max_pages``), so one link trap cannot eat the whole budget.
    max_pages_per_host: int | None = Field(None, ge=1)
    max_url_length: int = Field(2048, ge=64)
    content_types: list[str] = Field(default_factory=lambda: list(HTML_TYPES))

    # --- politeness ------------------------------------------------------------------
    user_agent: str = "llmpipe/0.1 (+https://github.com/llmpipe/llmpipe)"
    # Requests in flight at once, over all hosts, and to any one host.
    concurrency: int = Field(16, ge=1)
    per_host_concurrency: int = Field(2, ge=1)
    # Pause between two requests to the same host; a longer robots.txt Crawl-delay wins.
    delay_s: float = Field(0.0, ge=0)
    # Honour noindex / nofollow / noarchive in <meta name="robots"> and X-Robots-Tag.
    respect_meta_robots: bool = True

    # --- each request ----------------------------------------------------------------
    timeout_s: float = Field(10.0, gt=0)
    max_page_bytes: int = Field(2_000_000, ge=1024)
    max_redirects: int = Field(5, ge=0)
    # Retries of timeouts, connection errors, 429 (Retry-After honoured) and 5xx; never other 4xx.
    max_retries: int = Field(2, ge=0)
    backoff_s: float = Field(1.0, ge=0)
    max_backoff_s: float = Field(60.0, ge=0)

    # --- safety ----------------------------------------------------------------------
    # Hosts, IP addresses or networks (CIDR) that may be crawled although they resolve to a
    # private, loopback, link-local or multicast address (the demo and tests name 127.0.0.1).
    allow_private: list[str] = Field(default_factory=list)

    # --- output ----------------------------------------------------------------------
    # A new WARC file is started when the current one passes this size (Common Crawl: ~1 GB).
    warc_max_bytes: int = Field(1_000_000_000, ge=1_000_000)
    # Pages whose extracted text is shorter than this are not kept as documents.
    min_text_chars: int = Field(200, ge=0)

    @field_validator("seeds")
    @classmethod
    def _seeds_are_http(cls, seeds: list[str]) -> list[str]:
        from urllib.parse import urlsplit

        for seed in seeds:
            parts = urlsplit(seed)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"seed {seed!r} is not an http(s) URL")
        return seeds

    @field_validator("include", "exclude")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} is not a regular expression: {exc}") from None
        return patterns

    @field_validator("allow_private")
    @classmethod
    def _networks_parse(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            if "/" in entry:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError as exc:
                    raise ValueError(f"allow_private entry {entry!r}: {exc}") from None
        return entries

    @model_validator(mode="after")
    def _per_host_fits(self) -> "CrawlConfig":
        if self.per_host_concurrency > self.concurrency:
            raise ValueError(f"per_host_concurrency ({self.per_host_concurrency}) is above concurrency "
                             f"({self.concurrency})")
        return self

    @property
    def has_sources(self) -> bool:
        return bool(self.seeds or self.warc or self.local)
