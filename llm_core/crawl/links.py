"""What a fetched page tells the crawler: its links and its robots directives.

Parsed once with lxml (the crawler's hot path: a page's links are needed before the next
fetch, its text is extracted later, in parallel, from the WARC files). Directives come from
``<meta name="robots">`` (and ``<meta name="<our agent>">``) and the ``X-Robots-Tag`` header,
as Google documents them: ``noindex``, ``nofollow``, ``noarchive``, ``none`` (= noindex,
nofollow), optionally prefixed by a user agent in the header.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from urllib.parse import urljoin

import lxml.html
from lxml import etree

_SKIP_SCHEMES = ("mailto:", "javascript:", "tel:", "data:", "#")


@dataclass(frozen=True)
class Directives:
    noindex: bool = False
    nofollow: bool = False
    noarchive: bool = False

    def merge(self, tokens: set[str]) -> "Directives":
        none = "none" in tokens
        return Directives(noindex=self.noindex or none or "noindex" in tokens,
                          nofollow=self.nofollow or none or "nofollow" in tokens,
                          noarchive=self.noarchive or "noarchive" in tokens)

    def tokens(self) -> set[str]:
        return {name for name in ("noindex", "nofollow", "noarchive") if getattr(self, name)}


@dataclass(frozen=True)
class PageLinks:
    links: list[str]
    directives: Directives


def _tokens(value: str) -> set[str]:
    return {t.strip().lower() for t in value.split(",") if t.strip()}


def header_directives(values: list[str], user_agent: str) -> Directives:
    """``X-Robots-Tag`` values: ``noindex, nofollow`` for every crawler, or ``<agent>: noindex`` for one."""
    agent = user_agent.split("/")[0].strip().lower()
    directives = Directives()
    for value in values:
        head, sep, rest = value.partition(":")
        if sep and head.strip() and " " not in head.strip() and head.strip().lower() not in {"unavailable_after"}:
            if head.strip().lower() not in (agent, "*"):
                continue
            value = rest
        directives = directives.merge(_tokens(value))
    return directives


def page_encoding(html: bytes, charset: str | None) -> str | None:
    """The HTTP header's charset if Python knows it, else UTF-8 if the bytes are UTF-8, else None
    (libxml2 then reads ``<meta charset>``; without one it would assume Latin-1 and garble
    UTF-8 links, which most pages without a declaration are)."""
    if charset:
        try:
            return codecs.lookup(charset).name
        except LookupError:
            pass
    try:
        html.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "utf-8"


def parse_page(html: bytes, base_url: str, user_agent: str, charset: str | None = None,
               want_links: bool = True) -> PageLinks:
    """A page's meta robots and (if ``want_links``) its absolute http(s) links, ``<base href>``
    honoured. Links are not made canonical here: most of a page's links leave the crawl's scope,
    and the crawler drops those on their host before paying for courlan."""
    try:
        parser = lxml.html.HTMLParser(encoding=page_encoding(html, charset))
        root = lxml.html.fromstring(html, parser=parser)
    except (etree.ParserError, ValueError, LookupError):
        return PageLinks([], Directives())
    agent = user_agent.split("/")[0].strip().lower()
    directives = Directives()
    for meta in root.iter("meta"):
        name = (meta.get("name") or "").strip().lower()
        if name in ("robots", agent):
            directives = directives.merge(_tokens(meta.get("content") or ""))
    if not want_links:
        return PageLinks([], directives)
    base = root.find(".//base[@href]")
    if base is not None:
        base_url = urljoin(base_url, base.get("href").strip())
    links = []
    for anchor in root.iter("a"):
        href = (anchor.get("href") or "").strip()
        if not href or href.startswith(_SKIP_SCHEMES):
            continue
        try:
            absolute = urljoin(base_url, href)
        except ValueError:  # e.g. an invalid IPv6 literal
            continue
        if absolute.startswith(("http://", "https://")):
            links.append(absolute)
    return PageLinks(links, directives)
