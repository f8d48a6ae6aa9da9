"""URLs: one canonical form per page (courlan), and the crawl's scope rules.

Canonical forms make the frontier's "seen" check work: ``HTTP://Example.com:80/a#b`` and
``http://example.com/a`` are one page, fetched once. The scope says which links the crawl
may follow at all; robots.txt and the safety checks come later, per host.
"""

from __future__ import annotations

import re
from urllib.parse import urldefrag, urlsplit

from courlan import normalize_url

from llm_core.crawl.config import CrawlConfig


def canonical_url(url: str) -> str:
    """Normalise a URL (courlan: lower-case host, default port, fragment dropped) so each page is fetched once."""
    url, _ = urldefrag(url)
    try:
        return normalize_url(url)
    except ValueError:
        return url


def host_of(url: str) -> str:
    """The origin ``scheme://host[:port]``: robots.txt, politeness, per-host caps and limits are per origin."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.lower()}"


class Scope:
    """Which URLs the crawl may follow: http(s), same host or allowed domains, include and
    exclude patterns, a length limit. ``out_of_scope`` names the first rule a URL breaks."""

    def __init__(self, config: CrawlConfig, seeds: list[str]):
        self.config = config
        self.seed_hosts = {urlsplit(s).netloc.lower() for s in seeds}
        self.domains = [d.lower().lstrip(".") for d in config.allowed_domains]
        self.include = [re.compile(p) for p in config.include]
        self.exclude = [re.compile(p) for p in config.exclude]

    def host_refusal(self, url: str) -> str | None:
        """The host rules alone, on a URL not yet canonical (a default port or upper case in
        the host are tolerated): cheap enough to run on every link of every page first."""
        try:
            parts = urlsplit(url)
            hostname = parts.hostname
        except ValueError:
            return "not_http"
        if parts.scheme not in ("http", "https") or not hostname:
            return "not_http"
        if self.config.same_host:
            netloc = parts.netloc.lower()
            default = {"http": ":80", "https": ":443"}[parts.scheme]
            if netloc not in self.seed_hosts and netloc.removesuffix(default) not in self.seed_hosts:
                return "other_host"
        if self.domains and not any(hostname == d or hostname.endswith("." + d) for d in self.domains):
            return "other_domain"
        return None

    def out_of_scope(self, url: str) -> str | None:
        """The first scope rule a canonical URL breaks, or None."""
        reason = self.host_refusal(url)
        if reason:
            return reason
        if len(url) > self.config.max_url_length:
            return "url_too_long"
        if self.include and not any(p.search(url) for p in self.include):
            return "not_included"
        if any(p.search(url) for p in self.exclude):
            return "excluded"
        return None
