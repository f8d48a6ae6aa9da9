"""robots.txt per host (RFC 9309): what may be fetched, and the host's Crawl-delay.

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
class HostRules:
    """What robots.txt says of one host: its rules (None: everything allowed), the pause
    between two requests (config or Crawl-delay, the longer) and, if the whole host is
    refused (robots.txt unreachable or failing), why."""

    robots: Protego | None
    delay_s: float
    refused: str | None = None
    # The skip reason counted for each URL of a refused host.
    refused_as: str = "host_unavailable"

    def refusal(self, url: str, user_agent: str) -> str | None:
        """Why ``url`` must not be fetched (a skip reason), or None."""
        if self.refused:
            return self.refused_as
        if self.robots is not None and not self.robots.can_fetch(url, user_agent):
            return "robots_disallowed"
        return None


@dataclass
class RobotsAnswer:
    """What fetching robots.txt came to: the final status (None when the redirect chain was
    too long) and the body, at most ``ROBOTS_MAX_BYTES``, only for a status below 400."""

    status: int | None
    body: bytes = b""
    url: str = ""


async def fetch_robots(client: httpx.AsyncClient, url: str) -> RobotsAnswer:
    """GET ``url``, following redirects by hand (the client does not) and streaming at most
    ``ROBOTS_MAX_BYTES`` of the final body; the rest is never downloaded. Raises httpx.HTTPError
    when a server in the chain cannot be reached."""
    redirects = 0
    while True:
        async with client.stream("GET", url) as response:
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
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) >= ROBOTS_MAX_BYTES:
                    break  # leaving the block closes the connection: the rest is not downloaded
            return RobotsAnswer(status=status, body=bytes(body[:ROBOTS_MAX_BYTES]), url=url)


def parse_robots(body: bytes) -> Protego:
    # UTF-8 (RFC 9309 §2.3), a byte order mark dropped; the cap may cut a character in two.
    return Protego.parse(body.decode("utf-8-sig", errors="replace"))


async def load_rules(client: httpx.AsyncClient, site: str, config: CrawlConfig) -> HostRules:
    """Fetch and read ``<site>/robots.txt`` (``site`` = ``scheme://host[:port]``)."""
    try:
        answer = await fetch_robots(client, f"{site}/robots.txt")
    except (httpx.HTTPError, TimeoutError) as exc:
        reason = f"robots.txt unreachable: {type(exc).__name__}: {exc}"
    else:
        unavailable = answer.status is not None and (answer.status >= 500 or answer.status == 429)
        reason = f"robots.txt answered HTTP {answer.status}" if unavailable else None
        if reason and answer.url != f"{site}/robots.txt":
            reason += f" (redirected to {answer.url})"
    if reason:
        log.warning("not crawling %s: %s", site, reason)
        return HostRules(robots=None, delay_s=config.delay_s, refused=reason)
    if answer.status is None:
        log.warning("%s: robots.txt redirects more than %d times: treated as missing (all allowed)",
                    site, ROBOTS_MAX_REDIRECTS)
        return HostRules(robots=None, delay_s=config.delay_s)
    if answer.status >= 400:
        return HostRules(robots=None, delay_s=config.delay_s)
    robots = parse_robots(answer.body)
    crawl_delay = robots.crawl_delay(config.user_agent) or 0.0
    return HostRules(robots=robots, delay_s=max(config.delay_s, float(crawl_delay)))
