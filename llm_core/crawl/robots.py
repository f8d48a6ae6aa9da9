"""Politeness: robots.txt per host (RFC 9309) and the pause between two requests to a host.

Kept apart from the frontier loop because the rules are the protocol's, not the crawl's:
what a robots.txt redirect, a 4xx, a 5xx or an oversized file mean is fixed by RFC 9309,
and a site owner reading this file should find all of it in one place.

- Redirects are followed up to ``ROBOTS_MAX_REDIRECTS`` hops (§2.3.1.2), to other hosts too;
  a longer chain means robots.txt is unavailable (§2.3.1.3), which allows everything.
- 4xx (other than 429) allows everything (§2.3.1.3).
- 5xx, 429 or no answer at all refuses the whole host (§2.3.1.4), as Google's crawler
  does, so a broken server is never hammered.
- Only the first ``ROBOTS_MAX_BYTES`` are downloaded and parsed (§2.5); rules past them
  are ignored, the file itself is still used.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx
from protego import Protego

from llm_core.crawl.config import CrawlConfig

REDIRECTS = {301, 302, 303, 307, 308}
# RFC 9309 §2.5: a parsing limit of at least 500 kibibytes.
ROBOTS_MAX_BYTES = 500 * 1024
# RFC 9309 §2.3.1.2: follow at least five consecutive redirects.
ROBOTS_MAX_REDIRECTS = 5

log = logging.getLogger(__name__)


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class HostState:
    robots: Protego | None
    delay_s: float
    last_request: float = 0.0
    # Why the host is not crawled at all (robots.txt unreachable or failing), if it is not.
    refused: str | None = None


@dataclass
class RobotsAnswer:
    """What fetching robots.txt came to: the final status (None when the redirect chain was
    too long) and the body, at most ``ROBOTS_MAX_BYTES``, only for a status below 400."""

    status: int | None
    body: bytes = b""
    url: str = ""


def fetch_robots(client: httpx.Client, url: str) -> RobotsAnswer:
    """GET ``url``, following redirects by hand (the client does not) and streaming at most
    ``ROBOTS_MAX_BYTES`` of the final body; the rest is never downloaded. Raises httpx.HTTPError
    when a server in the chain cannot be reached."""
    redirects = 0
    while True:
        with client.stream("GET", url) as response:
            status = response.status_code
            location = response.headers.get("location")
            if status in REDIRECTS and location:
                if redirects == ROBOTS_MAX_REDIRECTS:
                    return RobotsAnswer(status=None, url=url)
                redirects += 1
                url = urljoin(url, location)
                continue
            if status >= 400:
                return RobotsAnswer(status=status, url=url)
            body = bytearray()
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) >= ROBOTS_MAX_BYTES:
                    break  # leaving the block closes the connection: the rest is not downloaded
            return RobotsAnswer(status=status, body=bytes(body[:ROBOTS_MAX_BYTES]), url=url)


def parse_robots(body: bytes) -> Protego:
    # UTF-8 (RFC 9309 §2.3), a byte order mark dropped; the cap may cut a character in two.
    return Protego.parse(body.decode("utf-8-sig", errors="replace"))


class Politeness:
    """robots.txt and the per-host pause, one ``HostState`` per origin, loaded on first use.
    Why a host is refused is appended to ``errors`` (the crawl's stats)."""

    def __init__(self, config: CrawlConfig, client: httpx.Client, errors: list[str]):
        self.config = config
        self.client = client
        self.errors = errors
        self.hosts: dict[str, HostState] = {}

    def host(self, url: str) -> HostState:
        key = origin(url)
        if key not in self.hosts:
            self.hosts[key] = self._load_robots(key)
        return self.hosts[key]

    def _load_robots(self, site: str) -> HostState:
        try:
            answer = fetch_robots(self.client, f"{site}/robots.txt")
        except httpx.HTTPError as exc:
            reason = f"robots.txt unreachable: {type(exc).__name__}: {exc}"
        else:
            unavailable = answer.status is not None and (answer.status >= 500 or answer.status == 429)
            reason = f"robots.txt answered HTTP {answer.status}" if unavailable else None
            if reason and answer.url != f"{site}/robots.txt":
                reason += f" (redirected to {answer.url})"
        if reason:
            log.warning("not crawling %s: %s", site, reason)
            self.errors.append(f"{site}: {reason}")
            return HostState(robots=None, delay_s=self.config.delay_s, refused=reason)
        if answer.status is None:
            log.warning("%s: robots.txt redirects more than %d times: treated as missing (all allowed)",
                        site, ROBOTS_MAX_REDIRECTS)
            return HostState(robots=None, delay_s=self.config.delay_s)
        if answer.status >= 400:
            return HostState(robots=None, delay_s=self.config.delay_s)
        robots = parse_robots(answer.body)
        crawl_delay = robots.crawl_delay(self.config.user_agent) or 0.0
        return HostState(robots=robots, delay_s=max(self.config.delay_s, float(crawl_delay)))

    def refusal(self, url: str) -> str | None:
        """Why ``url`` must not be fetched (a skip reason), or None."""
        host = self.host(url)
        if host.refused:
            return "host_unavailable"
        if host.robots is not None and not host.robots.can_fetch(url, self.config.user_agent):
            return "robots_disallowed"
        return None

    def wait_turn(self, url: str) -> None:
        """Sleep until the host's delay (config or Crawl-delay, the longer) has passed since its last request."""
        host = self.host(url)
        wait = host.last_request + host.delay_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        host.last_request = time.monotonic()
