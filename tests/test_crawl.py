"""The live crawler against real servers on 127.0.0.1: several hosts of real pages, a hostile
site, a crawl killed half way. Politeness is measured on the servers' side."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from crawl_sites import FaultSite, LoggingServer, MultiHostSite, page, send
from helpers import crawl_pages
from llm_core.crawl.config import CrawlConfig
from llm_core.crawl.crawler import STATE_FILE, warc_files
from llm_core.errors import StageError

REPO = Path(__file__).resolve().parents[1]
LOCAL = {"allow_private": ["127.0.0.1"]}


def config(seeds, **overrides) -> CrawlConfig:
    settings = {"max_pages": 500, "max_depth": 3, "timeout_s": 5, "backoff_s": 0.05, **LOCAL, **overrides}
    return CrawlConfig(seeds=seeds, **settings)


def warc_records(work: Path) -> list[tuple[str, str]]:
    out = []
    for path in warc_files(work):
        with open(path, "rb") as f:
            out += [(r.rec_headers.get_header("WARC-Target-URI"), r.http_headers.get_statuscode())
                    for r in ArchiveIterator(f) if r.rec_type == "response"]
    return out


def test_many_hosts_are_crawled_in_parallel_each_within_its_limits(html_pages, tmp_path):
    robots = ["User-agent: *\nCrawl-delay: 0.2\nAllow: /pages/\nAllow: /$\nDisallow: /\n",
              "User-agent: *\nDisallow: /private/\n",
              "User-agent: *\nDisallow: /private/\n"]
    pages = [html_pages[:3], html_pages[3:33], html_pages[33:63]]  # host 0 (Crawl-delay) gets few pages
    with MultiHostSite(pages, robots) as site:
        cfg = config([site.urls[0]], same_host=False, allowed_domains=["127.0.0.1"], concurrency=4,
                     per_host_concurrency=2, max_depth=2)
        started = time.monotonic()
        stats, urls = crawl_pages(cfg, tmp_path)
        elapsed = time.monotonic() - started
    for i, server in enumerate(site.servers):
        assert site.expected(i) <= set(server.paths()), f"host {i}: every allowed page is fetched"
        assert not any(p.startswith("/private/") for p in server.paths(served_only=False)), "robots.txt obeyed"
        counts = Counter(server.paths(served_only=False))
        assert counts.most_common(1)[0][1] == 1, f"host {i}: no URL fetched twice"
        assert server.max_active <= 2, f"host {i}: at most per_host_concurrency requests at once"
    starts = sorted(h.start for h in site.servers[0].hits)
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    # Request starts are spaced by the crawler; their arrival jitters by the event loop's latency.
    assert sum(gaps) / len(gaps) >= 0.19 and min(gaps) >= 0.12, f"host 0's Crawl-delay of 0.2 s holds: {gaps}"
    assert max(s.max_active for s in site.servers[1:]) == 2, "hosts are fetched with their allowed concurrency"
    assert site.concurrency.max_active <= 4, "global concurrency holds"
    assert site.concurrency.max_active >= 3, "several hosts at once"
    assert stats["skipped"]["robots_disallowed"] >= 2
    assert stats["hosts"] == 3
    # Host 0 alone needs ~(its requests) x 0.2 s; the others crawl meanwhile.
    assert elapsed < 0.2 * len(site.servers[0].hits) + 4
    assert set(urls) >= {s.url for s in site.servers}


def test_a_hostile_site_is_crawled_to_the_end_with_every_fault_counted(tmp_path):
    with FaultSite(slow_s=2.5, max_bytes=50_000) as site:
        cfg = config([site.server.url], same_host=False, timeout_s=1, max_retries=1, max_redirects=3,
                     max_page_bytes=50_000, max_depth=4, max_backoff_s=5)
        stats, urls = crawl_pages(cfg, tmp_path)
        hits = Counter(site.server.paths(served_only=False))
        throttle_times = [h.start for h in site.server.hits if h.path == "/throttle"]
    failed, retries, skipped = stats["failed"], stats["retries"], stats["skipped"]
    assert failed["timeout"] == 1 and retries["timeout"] == 1 and hits["/slow"] == 2
    assert retries["http_5xx"] == 1 and site.server.url + "flaky" in urls
    assert retries["http_429"] == 1 and site.server.url + "throttle" in urls
    assert throttle_times[1] - throttle_times[0] >= 0.95, "Retry-After: 1 is honoured"
    assert failed["connection_reset"] == 1 and hits["/reset"] == 2
    assert hits["/loop/a"] == 1 and hits["/loop/b"] == 1, "a redirect loop ends at the seen check"
    assert failed["redirect_limit"] == 1 and hits["/chain/3"] == 1 and "/chain/4" not in hits
    assert failed["too_large"] == 1
    assert failed["not_html"] == 1
    assert hits["/gone"] == 1 and stats["status"]["404"] >= 1, "a 404 is final: no retry"
    assert site.server.url + "legacy" in urls
    trap = [int(p.rsplit("/", 1)[1]) for p in hits if p.startswith("/trap/")]
    assert max(trap) == 7 and len(trap) == 7, "depth 4 bounds the trap: /trap/1 at depth 1, two steps per level"
    assert not any(p.startswith("ftp") for p in hits)  # ftp:// and mailto: are not followed
    assert skipped["private_address"] == 2, "10.0.0.1 and 169.254.169.254 are refused, not connected to"
    assert skipped["noindex"] == 1 and site.server.url + "noindex" not in urls
    assert hits["/from-noindex"] == 1, "noindex alone still lets links be followed"
    assert skipped["nofollow"] == 1 and "/only-from-nofollow" not in hits
    assert skipped["noarchive"] == 1 and site.server.url + "xrobots" not in urls


def test_private_addresses_are_refused_unless_allowed(tmp_path):
    with LoggingServer(lambda h: send(h, 200, page("Home"))) as server:
        with pytest.raises(StageError, match="private_address.*crawl.allow_private") as info:
            crawl_pages(CrawlConfig(seeds=[server.url], timeout_s=2), tmp_path / "a")
        assert server.hits == [], "nothing is sent to a refused host"
        assert not info.value.retryable
        stats, urls = crawl_pages(CrawlConfig(seeds=[server.url], timeout_s=2, allow_private=["127.0.0.0/8"]),
                                  tmp_path / "b")
    assert urls == [server.url]


def test_scope_rules_and_the_per_host_cap(html_pages, tmp_path):
    robots = ["User-agent: *\n", "User-agent: *\n"]
    with MultiHostSite(html_pages[:40], robots, think_s=0) as site:
        stats, urls = crawl_pages(config([site.urls[0]], exclude=[r"/pages/[a-c]"]), tmp_path / "scope")
        assert all(u.startswith(site.urls[0]) for u in urls), "same_host: the other host is not crawled"
        assert not any("/pages/a" in u or "/pages/b" in u or "/pages/c" in u for u in urls)
        assert stats["links"]["excluded"] >= 1 and stats["links"]["other_host"] >= 1
        stats, urls = crawl_pages(config(site.urls, same_host=True, max_pages_per_host=5), tmp_path / "cap")
        per_host = Counter(u.split("/")[2] for u in urls)
        assert stats["pages_fetched"] == 10 and all(n <= 5 for n in per_host.values())
        assert stats["skipped"]["host_cap"] >= 1


def test_page_budget_and_depth(html_pages, tmp_path):
    with MultiHostSite(html_pages[:20], ["User-agent: *\n"], think_s=0) as site:
        stats, _ = crawl_pages(config(site.urls, max_pages=5, concurrency=8, per_host_concurrency=4), tmp_path / "b")
        assert stats["pages_fetched"] == 5 and site.servers[0].served_pages() == 5
        stats, _ = crawl_pages(config(site.urls, max_depth=0), tmp_path / "d")
    assert stats["pages_fetched"] == 1  # the seed only


def test_warc_files_rotate_by_size(html_pages, tmp_path):
    with MultiHostSite(html_pages[:40], ["User-agent: *\n"], think_s=0) as site:
        stats, urls = crawl_pages(config(site.urls, warc_max_bytes=1_000_000), tmp_path)
    files = warc_files(tmp_path)
    assert len(files) >= 2 and all(f.stat().st_size < 1_000_000 + 2_000_000 for f in files)
    assert len(warc_records(tmp_path)) == stats["pages_archived"]


def test_unreachable_seed_is_a_retryable_error(tmp_path, unused_port):
    with pytest.raises(StageError, match=r"none of the 1 seed URL\(s\) gave a page.*robots.txt unreachable") as info:
        crawl_pages(config([f"http://127.0.0.1:{unused_port}/"], timeout_s=2), tmp_path)
    assert info.value.retryable, "the server may come back: the task's retries apply"


def test_seed_answering_503_is_retried_then_worth_a_task_retry(tmp_path):
    with LoggingServer(lambda h: send(h, 503, b"busy", "text/plain") if h.path != "/robots.txt"
                       else send(h, 404, b"", "text/plain")) as server:
        with pytest.raises(StageError, match=r"http_5xx=1") as info:
            crawl_pages(config([server.url], max_retries=2), tmp_path)
        assert server.paths().count("/") == 3
    assert info.value.retryable


def test_a_seed_that_is_not_a_url_is_a_config_error():
    with pytest.raises(ValueError, match="is not an http"):
        CrawlConfig(seeds=["example.com/page"])
    with pytest.raises(ValueError, match="not a regular expression"):
        CrawlConfig(exclude=["(unclosed"])


# -- resume ------------------------------------------------------------------------------
CRAWL_SCRIPT = """
import json, sys
from pathlib import Path
from llm_core.crawl.config import CrawlConfig
from llm_core.crawl.crawler import crawl
print(json.dumps(crawl(CrawlConfig.model_validate_json(sys.argv[1]), Path(sys.argv[2]))))
"""


def done_count(work: Path) -> int:
    try:
        with sqlite3.connect(f"file:{work / STATE_FILE}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM urls WHERE state='done'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_a_killed_crawl_resumes_without_fetching_anything_twice(html_pages, tmp_path):
    with MultiHostSite(html_pages[:60], ["User-agent: *\nAllow: /pages/\nAllow: /$\nDisallow: /\n"] * 2,
                       think_s=0.01) as site:
        cfg = config(site.urls, concurrency=4, per_host_concurrency=2)
        for server in site.servers:
            server.hold_after = 12  # then the servers stop answering: the crawl is caught mid-way
        work = tmp_path / "killed"
        proc = subprocess.Popen([sys.executable, "-c", CRAWL_SCRIPT, cfg.model_dump_json(), str(work)], cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE)
        served = lambda: sum(s.served_pages() for s in site.servers)  # noqa: E731
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (served() >= 24 and done_count(work) == served()):
            time.sleep(0.05)
        assert served() >= 24 and done_count(work) == served(), "the crawl committed what it was served"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = [p for s in site.servers for p in s.paths() if p != "/robots.txt"]
        for server in site.servers:
            server.hold_after = None
            server.gate.set()
        resumed = subprocess.run([sys.executable, "-c", CRAWL_SCRIPT, cfg.model_dump_json(), str(work)], cwd=REPO,
                                 env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                                 timeout=120)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        stats = json.loads(resumed.stdout.strip().splitlines()[-1])
        for server in site.servers:
            pages = [p for p in server.paths() if p != "/robots.txt"]
            assert len(pages) == len(set(pages)), "no page is fetched twice across the kill"
        assert len(before) >= 24
        uninterrupted = tmp_path / "whole"
        whole_stats, _ = crawl_pages(cfg, uninterrupted)
    resumed_urls = sorted(u for u, _ in warc_records(work))
    assert resumed_urls == sorted(u for u, _ in warc_records(uninterrupted)), "same pages as a crawl never killed"
    assert len(resumed_urls) == len(set(resumed_urls)), "no record twice in the WARC files"
    assert stats["pages_fetched"] == whole_stats["pages_fetched"]
