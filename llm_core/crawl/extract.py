"""What is kept of a fetched page: the raw response as a WARC record, its links, its main text.

Apart from the frontier loop because none of it needs the network: a page's bytes go in,
records, links and a document come out, so the extraction can be redone from the WARC file
(warcio) without refetching. Links are canonicalised here (courlan) so each page is fetched
once; the main text and title come from trafilatura, which is given bytes so it detects the
page's encoding itself.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from io import BytesIO
from typing import Any
from urllib.parse import urldefrag, urljoin

import httpx
import trafilatura
from bs4 import BeautifulSoup
from courlan import normalize_url
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from llm_core.documents import document_id

# httpx hands us decoded bodies; these headers would describe the wire bytes, not the payload kept.
_WIRE_HEADERS = {"content-encoding", "transfer-encoding", "content-length"}


def canonical_url(url: str) -> str:
    """Normalise a URL (courlan: lower-case host, default port, fragment dropped) so each page is fetched once."""
    url, _ = urldefrag(url)
    try:
        return normalize_url(url)
    except ValueError:
        return url


def archive(warc: WARCWriter, url: str, response: httpx.Response, body: bytes) -> None:
    """Write the response (status, headers, the decoded body) as a WARC ``response`` record."""
    headers = [(k, v) for k, v in response.headers.items() if k.lower() not in _WIRE_HEADERS]
    headers.append(("Content-Length", str(len(body))))
    http_headers = StatusAndHeaders(
        f"{response.status_code} {response.reason_phrase}", headers, protocol="HTTP/1.1"
    )
    record = warc.create_warc_record(url, "response", payload=BytesIO(body), http_headers=http_headers)
    warc.write_record(record)


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
