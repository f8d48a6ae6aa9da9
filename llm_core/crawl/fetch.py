"""One request: stream a page under its limits and name what went wrong, if anything.

A fetch ends in a ``Fetched`` response or a ``Failure`` with a ``kind`` that the stats count
and the crawler's retry rule reads: timeouts, refused or reset connections, 429 and 5xx may
pass and are retried with exponential backoff and jitter (a 429's or 503's ``Retry-After``
honoured, up to ``max_backoff_s``); anything else (other 4xx, a page over the byte cap, a
redirect loop) is final. Nothing raised here escapes a page: no page can fail the stage.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone

import httpx

from llm_core.crawl.config import CrawlConfig

RETRYABLE = {"timeout", "connect_error", "connection_reset", "http_429", "http_5xx", "fetch_error"}


@dataclass
class Fetched:
    response: httpx.Response
    body: bytes
    content_type: str


@dataclass
class Failure:
    kind: str  # timeout, connect_error, connection_reset, http_429, http_5xx, too_large, not_html, fetch_error
    detail: str = ""
    retry_after_s: float | None = None
    # The final response of a failure that got one (a 5xx or 429 after its last retry is archived).
    response: Fetched | None = None

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


def content_type_of(response: httpx.Response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


def retry_after_s(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date (RFC 9110 §10.2.3)."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def backoff_s(config: CrawlConfig, attempt: int) -> float:
    """Exponential backoff with "equal jitter": half the step fixed, half random, capped."""
    step = min(config.max_backoff_s, config.backoff_s * 2 ** attempt)
    return step / 2 + random.uniform(0, step / 2)


async def fetch(client: httpx.AsyncClient, url: str, config: CrawlConfig) -> Fetched | Failure:
    """GET ``url``: the whole exchange within ``timeout_s`` (httpx's timeout is per socket read,
    a server dripping bytes would never trip it), the body read only for allowed content
    types and never past ``max_page_bytes``."""
    try:
        async with asyncio.timeout(config.timeout_s):
            return await _get(client, url, config)
    except TimeoutError:
        return Failure("timeout", f"took longer than {config.timeout_s} s")
    except httpx.TimeoutException as exc:
        return Failure("timeout", f"{type(exc).__name__}: {exc}")
    except httpx.ConnectError as exc:
        return Failure("connect_error", f"{type(exc).__name__}: {exc}")
    except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
        return Failure("connection_reset", f"{type(exc).__name__}: {exc}")
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
        return Failure("fetch_error", f"{type(exc).__name__}: {exc}")


async def _get(client: httpx.AsyncClient, url: str, config: CrawlConfig) -> Fetched | Failure:
    async with client.stream("GET", url) as response:
        content_type = content_type_of(response)
        status = response.status_code
        if status == 200 and content_type not in config.content_types:
            return Failure("not_html", content_type or "no content type")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body.extend(chunk)
            if len(body) > config.max_page_bytes:
                return Failure("too_large", f"over {config.max_page_bytes} bytes")
    fetched = Fetched(response, bytes(body), content_type)
    if status == 429 or status >= 500:
        kind = "http_429" if status == 429 else "http_5xx"
        return Failure(kind, f"HTTP {status}", retry_after_s=retry_after_s(response), response=fetched)
    return fetched
