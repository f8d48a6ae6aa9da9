import pyarrow.parquet as pq
import pytest
from warcio.archiveiterator import ArchiveIterator

from llm_core.config import CrawlConfig
from llm_core.crawl import crawl
from llm_core.crawl.crawler import WARC_FILE
from llm_core.documents import DOCS_DIR, read_documents
from llm_core.errors import StageError


def run_crawl(site, tmp_path, **overrides):
    settings = {"max_pages": 50, "max_depth": 2, "max_page_bytes": 1_000_000, **overrides}
    config = CrawlConfig(seeds=[site.url], **settings)
    site.requests.clear()
    stats = crawl(config, tmp_path)
    return stats, read_documents(tmp_path / DOCS_DIR)


def test_crawls_real_pages_politely(site, tmp_path):
    stats, docs = run_crawl(site, tmp_path)
    assert "/robots.txt" in site.requests
    assert not any(p.startswith("/private/") for p in site.requests), "robots.txt must be obeyed"
    assert stats["skipped"]["robots_disallowed"] >= 1
    assert stats["skipped"]["too_large"] == 1  # /huge.html is over the byte cap
    assert stats["skipped"]["http_404"] >= 1  # /missing.html and the real pages' own dead links
    assert docs.num_rows >= 20
    assert docs.num_rows == stats["docs_out"]
    urls = docs.column("url").to_pylist()
    assert all(u.startswith(site.url) for u in urls), "links to other hosts are not followed"
    assert len(set(docs.column("id").to_pylist())) == docs.num_rows
    assert all(len(t) >= 200 for t in docs.column("text").to_pylist())
    assert sum(1 for t in docs.column("title").to_pylist() if t) >= docs.num_rows // 2


def test_non_utf8_page_is_decoded(site, tmp_path):
    _, docs = run_crawl(site, tmp_path)
    rows = [r for r in docs.to_pylist() if r["url"].endswith("/latin1.html")]
    assert rows, "the ISO-8859-1 page must be kept"
    assert "Straßenbahn fährt über die Brücke" in rows[0]["text"]


def test_warc_holds_every_fetched_response(site, tmp_path):
    stats, _ = run_crawl(site, tmp_path)
    with open(tmp_path / WARC_FILE, "rb") as f:
        records = [
            (r.rec_headers.get_header("WARC-Target-URI"), r.http_headers.get_statuscode(), r.content_stream().read())
            for r in ArchiveIterator(f) if r.rec_type == "response"
        ]
    assert len(records) == stats["pages_fetched"]
    url, status, body = records[0]
    assert (url, status) == (site.url, "200")
    assert body.startswith(b"<html>")


def test_page_budget_and_depth(site, tmp_path):
    stats, _ = run_crawl(site, tmp_path, max_pages=5)
    assert stats["pages_fetched"] == 5
    (tmp_path / "depth0").mkdir()
    stats, _ = run_crawl(site, tmp_path / "depth0", max_depth=0)
    assert stats["pages_fetched"] == 1  # the seed only


def test_no_seeds_is_a_clear_error(tmp_path):
    with pytest.raises(StageError, match=r"\[crawl\] no seed URLs"):
        crawl(CrawlConfig(seeds=[]), tmp_path)


def test_unreachable_seed_is_a_clear_error(tmp_path, unused_port):
    seed = f"http://127.0.0.1:{unused_port}/"
    with pytest.raises(StageError, match=r"\[crawl\] none of the 1 seed URL\(s\) could be fetched.*refused") as info:
        crawl(CrawlConfig(seeds=[seed], timeout_s=2), tmp_path)
    assert info.value.retryable, "the server may come back: the task's retries apply"


def test_redirects_pass_the_same_checks_as_links(site, tmp_path):
    stats, docs = run_crawl(site, tmp_path, max_pages=200, max_depth=1)
    assert stats["skipped"]["robots_disallowed"] == 2  # a link and a redirect into /private/
    assert stats["skipped"]["redirect"] == 3
    assert "/latin1.html" in site.requests  # same host: followed (once, though linked twice)
    assert site.requests.count("/latin1.html") == 1
    assert not any(p.startswith("/private/") for p in site.requests)  # redirect into a disallowed path
    assert all(u.startswith(site.url) for u in docs.column("url").to_pylist())  # redirect away: not followed
    assert stats["skipped"]["other_host"] >= 2


def test_a_page_slower_than_its_time_limit_is_skipped(site, tmp_path):
    import time

    started = time.monotonic()
    with pytest.raises(StageError, match=r"took longer than 1.5 s") as info:
        crawl(CrawlConfig(seeds=[site.url + "slow.html"], timeout_s=1.5), tmp_path)
    assert time.monotonic() - started < 5
    assert info.value.retryable, "a timeout may pass: worth a retry"


def test_a_seed_that_is_not_found_says_so(site, tmp_path):
    with pytest.raises(StageError, match=r"kept no document \(pages skipped, by reason: http_404=1\)") as info:
        crawl(CrawlConfig(seeds=[site.url + "missing.html"]), tmp_path)
    assert not info.value.retryable


def test_a_seed_answering_503_is_worth_a_retry(site, tmp_path):
    with pytest.raises(StageError, match=r"kept no document \(pages skipped, by reason: http_503=1\)") as info:
        crawl(CrawlConfig(seeds=[site.url + "busy.html"]), tmp_path)
    assert info.value.retryable, "a site down for a moment may answer the scheduled run's retry"
