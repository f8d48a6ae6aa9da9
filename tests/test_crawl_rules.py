"""The crawler's rules, one at a time, without a network: robots directives, Retry-After,
address safety, scope, and the WARC file cut back to its committed offset on resume."""

from __future__ import annotations

import asyncio
import ipaddress
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from warcio.archiveiterator import ArchiveIterator

from llm_core.crawl.config import CrawlConfig
from llm_core.crawl.fetch import backoff_s, retry_after_s
from llm_core.crawl.links import header_directives, parse_page
from llm_core.crawl.safety import AddressPolicy, is_public
from llm_core.crawl.urls import Scope, canonical_url, host_of
from llm_core.crawl.warc_out import RotatingWarc


def test_meta_robots_and_links():
    html = (b'<html><head><meta name="robots" content="NOINDEX, follow"><base href="/docs/"></head><body>'
            b'<a href="a.html#top">a</a><a href="mailto:x@y">m</a><a href="javascript:void(0)">j</a>'
            b'<a href="HTTP://Example.COM:80/b">b</a><a href="ftp://x/y">f</a></body></html>')
    page = parse_page(html, "http://site.test/index.html", "llmpipe/0.1")
    assert [canonical_url(u) for u in page.links] == ["http://site.test/docs/a.html", "http://example.com/b"]
    assert page.directives.noindex and not page.directives.nofollow
    none = parse_page(b'<meta name="llmpipe" content="none">', "http://x/", "llmpipe/0.1").directives
    assert none.noindex and none.nofollow
    other_agent = parse_page(b'<meta name="googlebot" content="noindex">', "http://x/", "llmpipe/0.1").directives
    assert not other_agent.noindex


def test_links_in_utf8_pages_without_a_declared_charset_are_not_garbled():
    html = '<a href="/pages/mandelplätzchen.html">x</a>'.encode()
    links = lambda html: [canonical_url(u) for u in parse_page(html, "http://x/", "a").links]  # noqa: E731
    assert links(html) == ["http://x/pages/mandelpl%C3%A4tzchen.html"]
    latin1 = '<meta charset="iso-8859-1"><a href="/Grüße.html">x</a>'.encode("iso-8859-1")
    assert links(latin1) == ["http://x/Gr%C3%BC%C3%9Fe.html"]


def test_x_robots_tag_for_all_agents_or_ours():
    assert header_directives(["noarchive"], "llmpipe/0.1").noarchive
    assert header_directives(["llmpipe: noindex, nofollow"], "llmpipe/0.1").nofollow
    assert not header_directives(["googlebot: noindex"], "llmpipe/0.1").noindex
    assert not header_directives(["unavailable_after: 25 Jun 2010 15:00:00 PST"], "llmpipe/0.1").noindex


def test_retry_after_as_seconds_or_date_and_the_backoff():
    assert retry_after_s(httpx.Response(429, headers={"Retry-After": "7"})) == 7.0
    later = datetime.now(timezone.utc) + timedelta(seconds=30)
    assert 25 <= retry_after_s(httpx.Response(503, headers={"Retry-After": format_datetime(later, usegmt=True)})) <= 31
    assert retry_after_s(httpx.Response(503, headers={"Retry-After": "soon"})) is None
    config = CrawlConfig(backoff_s=1.0, max_backoff_s=5.0)
    waits = [backoff_s(config, attempt) for attempt in range(6)]
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0 and all(w <= 5.0 for w in waits)


@pytest.mark.parametrize("address,public", [("8.8.8.8", True), ("127.0.0.1", False), ("10.1.2.3", False),
                                            ("169.254.169.254", False), ("224.0.0.1", False), ("::1", False),
                                            ("::ffff:192.168.0.1", False), ("0.0.0.0", False), ("fe80::1", False)])
def test_public_addresses(address, public):
    assert is_public(ipaddress.ip_address(address)) is public


def test_address_policy_allow_list():
    policy = AddressPolicy(["127.0.0.1", "10.0.0.0/8", "intranet.test"])
    refusal = lambda url: asyncio.run(policy.refusal(url))  # noqa: E731
    assert refusal("http://127.0.0.1:8000/") is None
    assert refusal("http://10.9.8.7/") is None
    assert refusal("http://intranet.test/") is None  # allowed by name, never resolved
    assert refusal("http://192.168.1.1/") == "private_address"
    assert refusal("http://[::1]/") == "private_address"
    assert asyncio.run(AddressPolicy([]).refusal("http://localhost/")) == "private_address"  # resolves to loopback
    assert refusal("http://no-such-host.invalid/") == "dns_error"


def test_scope_rules():
    config = CrawlConfig(seeds=["http://a.test/"], same_host=False, allowed_domains=["a.test"],
                         include=[r"/docs/"], exclude=[r"\.pdf$"], max_url_length=100)
    scope = Scope(config, config.seeds)
    assert scope.out_of_scope("http://a.test/docs/x.html") is None
    assert scope.out_of_scope("http://sub.a.test/docs/x.html") is None
    assert scope.out_of_scope("http://b.test/docs/x.html") == "other_domain"
    assert scope.out_of_scope("http://a.test/blog/") == "not_included"
    assert scope.out_of_scope("http://a.test/docs/x.pdf") == "excluded"
    assert scope.out_of_scope("http://a.test/docs/" + "x" * 100) == "url_too_long"
    same = Scope(CrawlConfig(seeds=["http://a.test/"]), ["http://a.test/"])
    assert same.out_of_scope("http://a.test:8080/") == "other_host"
    assert same.host_refusal("http://A.TEST:80/x") is None  # not yet canonical: still the seed's host
    assert host_of("HTTP://A.test:81/x") == "http://a.test:81"
    assert canonical_url("http://A.test:80/x#frag") == "http://a.test/x"


def test_warc_resume_cuts_what_was_not_committed(tmp_path):
    def response(text: str) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Type": "text/html"}, content=text.encode())

    warc = RotatingWarc(tmp_path, max_bytes=1_000_000)
    warc.write("http://a.test/1", response("one"), b"one")
    committed = warc.position()
    warc.write("http://a.test/2", response("two"), b"two")  # written, then the process dies
    warc.close()
    again = RotatingWarc(tmp_path, max_bytes=1_000_000)
    again.resume(*committed)
    again.write("http://a.test/3", response("three"), b"three")
    again.close()
    with open(again.files()[0], "rb") as f:
        urls = [r.rec_headers.get_header("WARC-Target-URI") for r in ArchiveIterator(f)]
    assert urls == ["http://a.test/1", "http://a.test/3"]
