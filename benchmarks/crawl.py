"""Crawl: our live crawler against Scrapy, pages per second on the same local multi-host site.

1. The site (``benchmarks/support/crawl_site.py``, its docstring has the details): one
   threading HTTP/1.1 server per host (keep-alive, Nagle off), each host on its own loopback
   address (127.0.0.2, 127.0.0.3, ...) so that Scrapy's download slots (keyed by host name)
   and our per-origin limits mean the same thing. Every host serves the real saved pages of
   trafilatura's test sets from the shared data (~950 after dropping the pages whose meta
   robots / meta refresh only one crawler would honour, ~140 KB each) at ``/site/<k>/``, each
   with a small inserted ``<nav>`` of 8 links down a tree on its host and 2 to other hosts; the
   pages' own links are left as they are: ~95 per page to other sites (out of scope), ~46
   root-relative ones that robots.txt (``Allow: /$``, ``Allow: /site/*/$``, ``Disallow: /``)
   forbids, ~1 that 404s. The server runs in a process of its own, started before any clock
   (it shares the machine's cores with the crawler: its CPU time per run is reported).
2. The same politeness and scope for both: 16 requests in flight in all, 2 per host, no delay,
   robots.txt obeyed, links followed on the site's hosts only, depth limit ``--depth`` (the
   seeds, every host's ``/``, are depth 0), a page budget of ``--pages`` responses, robots.txt
   not counted (Scrapy's CLOSESPIDER_PAGECOUNT counts robots.txt responses, so it is given
   ``pages + hosts``; it stops by closing the spider and lets the requests in flight finish, so
   it may fetch up to ~16 pages more: the pages each side fetched are reported and the rates
   use them). Same user agent, 10 s timeout, 2 MB page cap, redirects and retries left at each
   side's default (the site has neither).
   - Ours: ``llm_core.crawl.crawler.crawl`` with ``same_host=False``, ``allowed_domains`` = the
     host addresses, ``allow_private=["127.0.0.0/8"]``. It does more per page than Scrapy: each
     response is written to a gzipped WARC file and each page's outcome, its new links and the
     counters are committed to the SQLite frontier (that is what makes a killed crawl resumable).
   - Scrapy 2.19: a ``CrawlSpider`` with one ``Rule(LinkExtractor(allow_domains=<host:port>...,
     tags=("a",), deny_extensions=()))``: every ``<a href>`` on the hosts, as ours (the link
     extractor matches host:port, the offsite filter's ``allowed_domains`` the host alone);
     ROBOTSTXT_OBEY, CONCURRENT_REQUESTS=16, CONCURRENT_REQUESTS_PER_DOMAIN=2 (in 2.19
     CONCURRENT_REQUESTS_PER_IP is deprecated; the download slot is the URL's host name, here an
     IP address, so per domain is per host), DOWNLOAD_DELAY=0, AUTOTHROTTLE off, DEPTH_LIMIT, log
     level WARNING, telnet console off, default middlewares, download handler (Twisted HTTP/1.1)
     and reactor (asyncio). It keeps its frontier in memory and writes nothing.
3. Each crawl runs in a fresh child process (``--worker``), ours into a fresh temporary folder.
   ``crawl_s`` is measured inside that process around the crawl itself (ours: around
   ``crawl()``; Scrapy: from the ``spider_opened`` to the ``spider_closed`` signal), so the
   interpreter's start-up and imports are left out; ``total_s`` is the child's whole wall time
   as the parent sees it. ``cpu_s``: the child's CPU time over the crawl. ``--rounds`` rounds,
   the two crawlers alternating which goes first; the figures are the MEDIAN round of each.
4. ``speedup_vs_scrapy``: Scrapy's crawl time over ours, per page fetched (= our pages per
   second over Scrapy's; the page counts differ only by Scrapy's overshoot);
   ``speedup_vs_scrapy_cpu``: the same with CPU time per page. Both crawlers are bound by their
   own CPU: CPU time plus the time spent ready but waiting for a core (``runqueue_wait_s``, from
   Linux schedstat) add up to the wall time. ``--profile`` then runs our crawl once more in this
   process under cProfile and reports where its time goes (top functions, and their own time
   summed by area: URL handling, WARC writing, parsing, HTTP, SQLite...).

The last line printed is one JSON object (``pages_per_s``, ``pages_per_s_scrapy``,
``speedup_vs_scrapy``, ``pages``, ``pages_scrapy``, ``hosts``, settings and per-round detail).
Default size: 6 hosts, 1,000 pages, depth 4 (~3,500 pages within reach), 3 rounds: three to
four minutes on 2 cores. The pages are real (~140 KB, ~150 links each) and both crawlers manage
a few dozen pages per second per core on them (link extraction and URL handling dominate both),
hence the modest budget; ``--pages 2500 --hosts 8`` for a bigger run. On a shared machine
``speedup_vs_scrapy_cpu`` is the steadier figure; the load average before the runs is reported.
Usage: .venv/bin/python benchmarks/crawl.py [--pages N] [--hosts H] [--depth D] [--rounds R] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from support import log, rounded, shared_data  # noqa: E402

SITE_SCRIPT = Path(__file__).resolve().parent / "support" / "crawl_site.py"
USER_AGENT = "llmpipe-bench/0.1"
CONCURRENCY = 16
PER_HOST = 2
TIMEOUT_S = 10.0
MAX_PAGE_BYTES = 2_000_000


# --- the site, in its own process ----------------------------------------------------------------
class SiteProcess:
    """``python crawl_site.py`` started and stopped; ``info`` is the JSON line it prints when ready."""

    def __init__(self, data: Path, hosts: int):
        self.command = [sys.executable, str(SITE_SCRIPT), "--data", str(data), "--hosts", str(hosts)]

    def __enter__(self) -> "SiteProcess":
        import psutil

        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line:
            sys.exit(f"the site did not start (exit status {self.process.wait()})")
        self.info = json.loads(line)
        self.psutil = psutil.Process(self.process.pid)
        return self

    def cpu_s(self) -> float:
        times = self.psutil.cpu_times()
        return times.user + times.system

    def __exit__(self, *exc) -> None:
        self.process.stdin.close()  # the site stops when its stdin closes
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- the two crawlers (each run in a child process: ``--worker ours|scrapy``) ----------------------
def runqueue_wait_s() -> float | None:
    """Seconds this process's threads have been ready to run but waiting for a core (Linux
    schedstat): on a shared machine, the part of the wall time lost to other load."""
    try:
        return sum(int(Path(task, "schedstat").read_text().split()[1])
                   for task in Path("/proc/self/task").iterdir()) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def waited(before: float | None) -> float | None:
    after = runqueue_wait_s()
    return None if before is None or after is None else after - before


def our_config(spec: dict):
    from llm_core.crawl.config import CrawlConfig

    return CrawlConfig(seeds=spec["seeds"], same_host=False, allowed_domains=spec["hosts"],
                       allow_private=["127.0.0.0/8"], concurrency=CONCURRENCY, per_host_concurrency=PER_HOST,
                       delay_s=0.0, max_pages=spec["pages"], max_depth=spec["depth"], user_agent=USER_AGENT,
                       timeout_s=TIMEOUT_S, max_page_bytes=MAX_PAGE_BYTES)


def run_ours(spec: dict) -> dict:
    from llm_core.crawl.crawler import crawl, warc_files

    config = our_config(spec)
    with tempfile.TemporaryDirectory(prefix="llmpipe-bench-crawl-") as tmp:
        work = Path(tmp)
        wait, cpu, started = runqueue_wait_s(), time.process_time(), time.perf_counter()
        stats = crawl(config, work)
        crawl_s, cpu_s, wait_s = time.perf_counter() - started, time.process_time() - cpu, waited(wait)
        warc_bytes = sum(p.stat().st_size for p in warc_files(work))
        sqlite_bytes = sum(p.stat().st_size for p in work.glob("frontier.sqlite*"))
    return {"crawl_s": crawl_s, "cpu_s": cpu_s, "runqueue_wait_s": wait_s, "pages": stats["pages_fetched"],
            "pages_200": stats["status"].get("200", 0), "status": stats["status"],
            "archived": stats["pages_archived"], "bytes_fetched": stats["bytes_fetched"],
            "warc_bytes": warc_bytes, "sqlite_bytes": sqlite_bytes, "urls": stats["urls"],
            "skipped": stats["skipped"], "links": stats["links"], "failed": stats["failed"],
            "errors": stats["errors"][:3]}


def run_scrapy(spec: dict) -> dict:
    from collections import Counter
    from urllib.parse import urlsplit

    import scrapy
    from scrapy import signals
    from scrapy.crawler import CrawlerProcess
    from scrapy.linkextractors import LinkExtractor
    from scrapy.spiders import CrawlSpider, Rule

    hosts, seeds = spec["hosts"], spec["seeds"]
    # LinkExtractor's allow_domains is matched against host:port, the offsite filter's against the host.
    netlocs = [urlsplit(seed).netloc for seed in seeds]

    class BenchSpider(CrawlSpider):
        name = "bench"
        allowed_domains = hosts
        start_urls = seeds
        rules = (Rule(LinkExtractor(allow_domains=netlocs, tags=("a",), attrs=("href",), deny_extensions=()),
                      follow=True),)

    settings = {
        "ROBOTSTXT_OBEY": True, "CONCURRENT_REQUESTS": CONCURRENCY, "CONCURRENT_REQUESTS_PER_DOMAIN": PER_HOST,
        "DOWNLOAD_DELAY": 0, "AUTOTHROTTLE_ENABLED": False, "DEPTH_LIMIT": spec["depth"],
        # robots.txt responses count towards CLOSESPIDER_PAGECOUNT: one per host on top of the budget.
        "CLOSESPIDER_PAGECOUNT": spec["pages"] + len(hosts),
        "USER_AGENT": USER_AGENT, "DOWNLOAD_TIMEOUT": TIMEOUT_S, "DOWNLOAD_MAXSIZE": MAX_PAGE_BYTES,
        "LOG_LEVEL": "WARNING", "TELNETCONSOLE_ENABLED": False,
    }
    process = CrawlerProcess(settings)
    crawler = process.create_crawler(BenchSpider)
    clock: dict = {}
    statuses: Counter = Counter()
    arrivals: list[float] = []  # when each response came (to see idle stretches and the close's tail)

    def opened(spider):
        clock["wait"], clock["cpu"], clock["start"] = runqueue_wait_s(), time.process_time(), time.perf_counter()

    def closed(spider, reason):
        clock["crawl_s"], clock["cpu_s"] = time.perf_counter() - clock["start"], time.process_time() - clock["cpu"]
        clock["runqueue_wait_s"] = waited(clock["wait"])
        clock["reason"] = reason

    def received(response, request, spider):
        arrivals.append(time.perf_counter())
        statuses["robots" if urlsplit(response.url).path == "/robots.txt" else str(response.status)] += 1

    crawler.signals.connect(opened, signal=signals.spider_opened)
    crawler.signals.connect(closed, signal=signals.spider_closed)
    crawler.signals.connect(received, signal=signals.response_received)
    process.crawl(crawler)
    process.start()
    stats = crawler.stats.get_stats()
    keep = ("downloader/request_count", "downloader/response_bytes", "robotstxt/forbidden", "offsite/filtered",
            "dupefilter/filtered", "request_depth_max", "scheduler/enqueued")
    robots = statuses.pop("robots", 0)
    return {"crawl_s": clock["crawl_s"], "cpu_s": clock["cpu_s"], "runqueue_wait_s": clock["runqueue_wait_s"],
            "pages": sum(statuses.values()), "pages_200": statuses.get("200", 0), "status": dict(statuses),
            "robots_txt": robots, "finish_reason": clock["reason"],
            "last_response_s": arrivals[-1] - clock["start"] if arrivals else None,
            "longest_gap_between_responses_s": max((b - a for a, b in zip(arrivals, arrivals[1:])), default=None),
            "stats": {k: stats.get(k) for k in keep}, "version": scrapy.__version__}


WORKERS = {"ours": run_ours, "scrapy": run_scrapy}


def worker_main(kind: str, spec_json: str) -> None:
    print(json.dumps(WORKERS[kind](json.loads(spec_json))), flush=True)


# --- the comparison ------------------------------------------------------------------------------
def run_worker(kind: str, spec: dict, site: SiteProcess) -> dict:
    """One crawl in a fresh child process: its own figures, plus the wall time seen from here and
    the site's CPU time meanwhile."""
    site_cpu, started = site.cpu_s(), time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--worker", kind, "--spec", json.dumps(spec)],
                          stdout=subprocess.PIPE, text=True)
    total_s = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"the {kind} crawl failed (exit status {done.returncode})")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(total_s=total_s, site_cpu_s=site.cpu_s() - site_cpu,
                  pages_per_s=result["pages"] / result["crawl_s"])
    log(f"  {kind:6s}: {result['pages']} pages ({result['pages_200']} HTTP 200) in {result['crawl_s']:.2f}s "
        f"= {result['pages_per_s']:.0f} pages/s; CPU {result['cpu_s']:.2f}s, waiting for a core "
        f"{result['runqueue_wait_s'] or 0:.2f}s, site CPU {result['site_cpu_s']:.2f}s, "
        f"{total_s:.2f}s with start-up")
    return result


def median_run(runs: list[dict]) -> dict:
    """The round whose pages per second is the median (the lower middle one for an even count)."""
    ranked = sorted(runs, key=lambda r: r["pages_per_s"])
    return ranked[(len(ranked) - 1) // 2]


AREAS = (  # a profile entry's own time goes to the first area whose marker its file or name contains
    ("sqlite_frontier", ("sqlite3", "crawl/frontier.py")),
    ("warc_writing_gzip", ("warcio", "warc_out.py", "zlib", "gzip")),
    ("html_parsing_links_lxml", ("lxml", "crawl/links.py")),
    ("url_canonicalisation_courlan", ("courlan", "urllib/parse", "crawl/urls.py")),
    ("robots_protego", ("protego", "crawl/robots.py")),
    ("http_client_httpx_httpcore_h11", ("httpx", "httpcore", "h11", "anyio")),
    ("event_loop_sockets", ("asyncio", "selectors", "socket", "{method 'poll'", "{method 'recv", "{method 'send")),
    ("crawler_scheduling", ("crawl/crawler.py", "crawl/fetch.py")),
)


def area_of(file: str, name: str) -> str:
    where = f"{file}:{name}"
    return next((area for area, markers in AREAS if any(m in where for m in markers)), "other")


def profile_ours(spec: dict, top: int = 25) -> dict:
    """Our crawl once more, in this process, under cProfile: the top functions by own time and
    by cumulative time, and own time summed per area."""
    import cProfile
    import pstats

    from llm_core.crawl.crawler import crawl

    config = our_config(spec)
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory(prefix="llmpipe-bench-crawl-") as tmp:
        started = time.perf_counter()
        profiler.enable()
        stats = crawl(config, Path(tmp))
        profiler.disable()
        crawl_s = time.perf_counter() - started
    table = pstats.Stats(profiler).stats  # (file, line, name) -> (cc, ncalls, tottime, cumtime, callers)
    total = sum(v[2] for v in table.values())
    areas: dict[str, float] = {}
    for (file, _, name), (_, _, tottime, _, _) in table.items():
        areas[area_of(file, name)] = areas.get(area_of(file, name), 0.0) + tottime

    def label(key) -> str:
        file, line, name = key
        return name if file == "~" else f"{Path(file).parent.name}/{Path(file).name}:{line}({name})"

    def rows(index: int) -> list[list]:
        ranked = sorted(table.items(), key=lambda kv: kv[1][index], reverse=True)[:top]
        return [[label(k), v[1], round(v[2], 3), round(v[3], 3)] for k, v in ranked]

    result = {"crawl_s_profiled": crawl_s, "pages": stats["pages_fetched"], "own_time_s": total,
              "share_of_own_time_by_area": {a: s / total for a, s in sorted(areas.items(), key=lambda kv: -kv[1])},
              "top_own_time": rows(2), "top_cumulative": rows(3),
              "columns": ["function", "calls", "own_s", "cumulative_s"]}
    log(f"profile of our crawl ({stats['pages_fetched']} pages, {crawl_s:.1f}s under cProfile):")
    for area, share in result["share_of_own_time_by_area"].items():
        log(f"  {area:32s} {share:6.1%}")
    log("  top functions by own time:")
    for name, calls, own, cumulative in result["top_own_time"][:15]:
        log(f"    {own:7.3f}s own {cumulative:7.3f}s cum {calls:8d}x  {name}")
    return result



def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=1000, help="page budget of each crawl (robots.txt not counted)")
    parser.add_argument("--hosts", type=int, default=6, help="hosts of the site (127.0.0.2 ...)")
    parser.add_argument("--depth", type=int, default=4, help="depth limit (the hosts' indexes are depth 0)")
    parser.add_argument("--rounds", type=int, default=3, help="crawls of each crawler (the median is reported)")
    parser.add_argument("--profile", action="store_true", help="then profile our crawl in-process (cProfile)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker_main(args.worker, args.spec)

    data = shared_data()
    load_before = os.getloadavg()[0]
    with SiteProcess(data, args.hosts) as site:
        info = site.info
        hosts = info["hosts"]
        spec = {"hosts": hosts, "seeds": [f"http://{h}:{info['port']}/" for h in hosts],
                "pages": args.pages, "depth": args.depth}
        log(f"site: {len(hosts)} hosts ({hosts[0]}..{hosts[-1]}:{info['port']}), {info['pages_per_host']} real pages "
            f"each ({info['page_bytes'] / info['pages_per_host'] / 1024:.0f} KiB on average), fan-out {info['fanout']}; "
            f"budget {args.pages} pages, depth {args.depth}, {args.rounds} rounds")
        runs: dict[str, list[dict]] = {"ours": [], "scrapy": []}
        for r in range(args.rounds):
            log(f"round {r + 1}/{args.rounds}")
            for kind in (("ours", "scrapy") if r % 2 == 0 else ("scrapy", "ours")):
                runs[kind].append(run_worker(kind, spec, site))
        profile = profile_ours(spec) if args.profile else None

    ours, theirs = median_run(runs["ours"]), median_run(runs["scrapy"])
    speedup = ours["pages_per_s"] / theirs["pages_per_s"]
    cpu_per_page = {kind: statistics.median(r["cpu_s"] / r["pages"] for r in rs) for kind, rs in runs.items()}
    log(f"median round: ours {ours['pages_per_s']:.0f} pages/s, Scrapy {theirs['pages_per_s']:.0f} pages/s: "
        f"ours is {speedup:.2f}x Scrapy's rate")
    figures = {
        "benchmark": "crawl",
        "pages_per_s": ours["pages_per_s"],
        "pages_per_s_scrapy": theirs["pages_per_s"],
        "speedup_vs_scrapy": speedup,
        "pages": ours["pages"],
        "pages_scrapy": theirs["pages"],
        "hosts": len(hosts),
        "crawl_s": ours["crawl_s"], "crawl_s_scrapy": theirs["crawl_s"],
        "total_s": ours["total_s"], "total_s_scrapy": theirs["total_s"],
        # CPU time per page, the median over the rounds: what other load on a shared machine disturbs least.
        "cpu_s_per_page": cpu_per_page["ours"], "cpu_s_per_page_scrapy": cpu_per_page["scrapy"],
        "speedup_vs_scrapy_cpu": cpu_per_page["scrapy"] / cpu_per_page["ours"],
        "statistic": f"median round of {args.rounds} (by pages per second; CPU per page: median over the rounds), "
                     "each crawler in a fresh process; "
                     "crawl_s inside the process (ours: crawl(); Scrapy: spider_opened to spider_closed), "
                     "total_s with interpreter start-up and imports; speedup = Scrapy's time per page / ours",
        "settings": {"concurrency": CONCURRENCY, "per_host_concurrency": PER_HOST, "delay_s": 0,
                     "robots_txt_obeyed": True, "max_depth": args.depth, "max_pages": args.pages,
                     "scrapy_closespider_pagecount": args.pages + len(hosts), "user_agent": USER_AGENT,
                     "timeout_s": TIMEOUT_S, "max_page_bytes": MAX_PAGE_BYTES},
        "site": {"hosts": hosts, "pages_per_host": info["pages_per_host"], "fanout": info["fanout"],
                 "mean_page_bytes": info["page_bytes"] / info["pages_per_host"], "robots_txt": info["robots"],
                 "server": "one ThreadingHTTPServer per host (HTTP/1.1 keep-alive, Nagle off) in a separate process"},
        "ours_does_more": "every response written to a gzipped WARC file and every page's outcome, links and "
                          "counters committed to the SQLite frontier (resumable); Scrapy keeps its frontier in "
                          "memory and writes nothing",
        "ours": ours, "scrapy": theirs,
        "rounds": {kind: [{k: r[k] for k in ("pages", "crawl_s", "pages_per_s", "cpu_s", "runqueue_wait_s",
                                             "site_cpu_s", "total_s")}
                          for r in rs] for kind, rs in runs.items()},
        "load_average_1min_before": load_before,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    if profile:
        figures["profile_ours"] = profile
    print(json.dumps(rounded(figures)))


if __name__ == "__main__":
    main()
