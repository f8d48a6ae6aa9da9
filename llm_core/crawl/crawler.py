"""The live crawl: many hosts at once, each no faster than its limit, resumable after a kill.

One asyncio loop (httpx) schedules fetches under three limits: ``concurrency`` requests in
flight in all, ``per_host_concurrency`` to any one host, and one request start per host per
``delay_s`` (or the host's robots.txt Crawl-delay, the longer). Pages go to rotating WARC
files as they arrive (llm_core.crawl.warc_out) and the frontier lives in SQLite
(llm_core.crawl.frontier), so memory does not grow with the crawl and a crawl killed half way
continues where it stopped. Text is not extracted here: the stage extracts it from the WARC
files afterwards, in parallel, with the same code as any other WARC (llm_core.crawl.ingest).

The modules around it each own one concern: ``urls`` (canonical URLs, scope), ``robots``
(RFC 9309), ``safety`` (no private addresses), ``fetch`` (one request and its failure
kinds), ``links`` (links and meta robots of a page).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from llm_core.crawl.config import CrawlConfig
from llm_core.crawl.fetch import Failure, Fetched, backoff_s, fetch
from llm_core.crawl.frontier import DONE, FAILED, SKIPPED, Entry, Frontier
from llm_core.crawl.links import Directives, header_directives, parse_page
from llm_core.crawl.robots import REDIRECTS, HostRules, load_rules
from llm_core.crawl.safety import AddressPolicy
from llm_core.crawl.urls import Scope, canonical_url, host_of
from llm_core.crawl.warc_out import RotatingWarc

STATE_FILE = "frontier.sqlite"
# URLs of one host held in memory at a time; the rest wait in SQLite.
LEASE = 64
MAX_ERRORS = 50
# What the stats count, by kind: final failures, retries, URLs not fetched, links not followed, HTTP statuses.
COUNTER_GROUPS = ("failed", "retries", "skipped", "links", "status")

log = logging.getLogger(__name__)


@dataclass
class Host:
    """A host's scheduling state: its rules (once loaded), requests in flight, the earliest
    next request start, and the batch of its queued URLs held in memory."""

    name: str
    rules: HostRules | None = None
    loading: bool = False
    active: int = 0
    next_start: float = 0.0
    queue: deque[Entry] = field(default_factory=deque)
    exhausted: bool = False  # nothing more queued in SQLite for this host


class Crawler:
    def __init__(self, config: CrawlConfig, client: httpx.AsyncClient, frontier: Frontier, warc: RotatingWarc):
        self.config = config
        self.client = client
        self.frontier = frontier
        self.warc = warc
        self.seeds = [canonical_url(s) for s in config.seeds]
        self.scope = Scope(config, self.seeds)
        self.addresses = AddressPolicy(config.allow_private)
        self.hosts: dict[str, Host] = {}
        self.tasks: set[asyncio.Task] = set()
        self.errors: list[str] = frontier.get_meta("errors", [])
        self.per_host_cap = config.max_pages_per_host or config.max_pages

    # -- bookkeeping ---------------------------------------------------------------------
    @property
    def fetched(self) -> int:
        return self.frontier.counters["pages_fetched"]

    def error(self, url: str, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(f"{url}: {message}")
            self.frontier.set_meta("errors", self.errors)

    def host(self, name: str) -> Host:
        if name not in self.hosts:
            self.hosts[name] = Host(name)
        return self.hosts[name]

    def enqueue(self, links: list[str], depth: int, hops: int = 0) -> list[Entry]:
        """Queue the in-scope links (call inside a transaction); out-of-scope ones are counted by reason."""
        entries = []
        for link in dict.fromkeys(links):
            reason = self.scope.host_refusal(link)
            if reason is None:
                link = canonical_url(link)
                reason = self.scope.out_of_scope(link)
            if reason:
                self.frontier.count(f"links.{reason}")
                continue
            entries.append(Entry(link, host_of(link), depth, hops))
        if entries:
            self.frontier.add(entries)
            for entry in entries:
                self.host(entry.host).exhausted = False
        return entries

    # -- scheduling ----------------------------------------------------------------------
    def budget_left(self) -> int:
        in_flight = sum(h.active for h in self.hosts.values())
        return self.config.max_pages - self.fetched - in_flight

    def next_entry(self, host: Host) -> Entry | None:
        if not host.queue and not host.exhausted:
            host.queue.extend(self.frontier.lease(host.name, LEASE))
            host.exhausted = not host.queue
        return host.queue.popleft() if host.queue else None

    def start_ready(self) -> float | None:
        """Start every fetch the limits allow now; returns the earliest time another could start."""
        now = time.monotonic()
        wake: float | None = None
        for host in list(self.hosts.values()):
            while len(self.tasks) < self.config.concurrency and self.budget_left() > 0:
                if host.loading or host.active >= self.config.per_host_concurrency:
                    break
                if host.next_start > now:
                    wake = host.next_start if wake is None else min(wake, host.next_start)
                    break
                if host.rules is None:
                    self.spawn(self.load_host(host))
                    break
                entry = self.next_entry(host)
                if entry is None:
                    break
                if entry.not_before > time.time():  # a retry a killed crawl had scheduled
                    host.queue.appendleft(entry)
                    host.next_start = now + entry.not_before - time.time()
                    continue
                refusal = host.rules.refusal(entry.url, self.config.user_agent)
                if refusal is None and self.frontier.host_pages[host.name] + host.active >= self.per_host_cap:
                    refusal = "host_cap"
                if refusal:
                    with self.frontier.transaction():
                        self.frontier.count(f"skipped.{refusal}")
                        self.frontier.finish(entry, SKIPPED)
                    continue
                host.active += 1
                host.next_start = now + host.rules.delay_s
                self.spawn(self.visit(host, entry))
        return wake

    def spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def has_work(self) -> bool:
        if self.budget_left() <= 0:
            return False
        return any(h.queue or not h.exhausted for h in self.hosts.values())

    async def run(self) -> None:
        """Crawl until the frontier is empty or the page budget is spent."""
        with self.frontier.transaction():
            self.enqueue(self.seeds, depth=0)
        for name in self.frontier.queued_hosts():
            self.host(name)
        while True:
            wake = self.start_ready()
            if not self.tasks:
                if not self.has_work():
                    break
                await asyncio.sleep(max(0.0, (wake or time.monotonic()) - time.monotonic()) or 0.01)
                continue
            timeout = None if wake is None else max(0.0, wake - time.monotonic())
            done, _ = await asyncio.wait(set(self.tasks), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a bug in our code is raised, not hidden

    # -- one host, one page --------------------------------------------------------------
    async def load_host(self, host: Host) -> None:
        """Check the host's addresses, then read its robots.txt; both once per crawl."""
        host.loading = True
        try:
            refusal = await self.addresses.refusal(host.name)
            if refusal:
                message = f"refused: {refusal} (allow it with crawl.allow_private)" if refusal == "private_address" \
                    else f"refused: {refusal}"
                host.rules = HostRules(robots=None, delay_s=0.0, refused=message, refused_as=refusal)
            else:
                try:
                    async with asyncio.timeout(self.config.timeout_s):
                        host.rules = await load_rules(self.client, host.name, self.config)
                except TimeoutError:
                    host.rules = HostRules(robots=None, delay_s=self.config.delay_s,
                                           refused=f"robots.txt took longer than {self.config.timeout_s} s")
            if host.rules.refused:
                self.error(host.name, host.rules.refused)
            host.next_start = time.monotonic() + host.rules.delay_s
        finally:
            host.loading = False

    async def visit(self, host: Host, entry: Entry) -> None:
        try:
            outcome = await fetch(self.client, entry.url, self.config)
        finally:
            host.active -= 1
        entry.attempts += 1
        if isinstance(outcome, Failure) and self.should_retry(entry, outcome):
            self.retry(host, entry, outcome)
            return
        with self.frontier.transaction():
            if isinstance(outcome, Failure):
                self.frontier.count(f"failed.{outcome.kind}")
                if outcome.kind not in ("not_html", "too_large"):
                    self.error(entry.url, outcome.detail)
            fetched = outcome.response if isinstance(outcome, Failure) else outcome
            if fetched is not None:  # a final 5xx or 429 is archived like any response
                self.record(entry, fetched)
            self.frontier.finish(entry, DONE if fetched is not None else FAILED)

    def should_retry(self, entry: Entry, failure: Failure) -> bool:
        """Retry what may pass, ``max_retries`` times, unless the server asks for more patience
        (Retry-After) than ``max_backoff_s``."""
        if not failure.retryable or entry.attempts > self.config.max_retries:
            return False
        return failure.retry_after_s is None or failure.retry_after_s <= self.config.max_backoff_s

    def retry(self, host: Host, entry: Entry, failure: Failure) -> None:
        """Put ``entry`` back at the head of its host's queue; the host waits out the backoff
        (or the server's Retry-After, if longer) before its next request: it is the host that is failing."""
        wait = max(backoff_s(self.config, entry.attempts - 1), failure.retry_after_s or 0.0)
        entry.not_before = time.time() + wait
        with self.frontier.transaction():
            self.frontier.count(f"retries.{failure.kind}")
            self.frontier.retry_later(entry)
        host.queue.appendleft(entry)
        host.next_start = max(host.next_start, time.monotonic() + wait)

    def record(self, entry: Entry, fetched: Fetched) -> None:
        """Archive a response and follow what it leads to (inside the page's transaction)."""
        response = fetched.response
        self.frontier.count("pages_fetched")
        self.frontier.count("bytes_fetched", len(fetched.body))
        self.frontier.count(f"status.{response.status_code}")
        if response.status_code in REDIRECTS and "location" in response.headers:
            self.archive(entry, fetched)
            self.follow_redirect(entry, response)
            return
        directives = Directives()
        links: list[str] = []
        if response.status_code == 200:
            page = parse_page(fetched.body, entry.url, self.config.user_agent, response.charset_encoding,
                              want_links=entry.depth < self.config.max_depth)
            if self.config.respect_meta_robots:
                header = header_directives(response.headers.get_list("x-robots-tag"), self.config.user_agent)
                directives = page.directives.merge(header.tokens())
            links = page.links
        if directives.noindex or directives.noarchive:
            self.frontier.count("skipped.noindex" if directives.noindex else "skipped.noarchive")
        else:
            self.archive(entry, fetched)
        if directives.nofollow:
            self.frontier.count("skipped.nofollow")
        elif entry.depth < self.config.max_depth and links:
            self.enqueue(links, entry.depth + 1)

    def follow_redirect(self, entry: Entry, response: httpx.Response) -> None:
        """A redirect's target joins the frontier at the same depth, so it passes the same scope,
        robots.txt, safety and seen checks as a link; ``max_redirects`` bounds a chain."""
        try:
            target = canonical_url(urljoin(entry.url, response.headers["location"]))
        except ValueError:
            self.frontier.count("skipped.bad_redirect")
            return
        if entry.hops + 1 > self.config.max_redirects:
            self.frontier.count("failed.redirect_limit")
            return
        self.enqueue([target], entry.depth, entry.hops + 1)

    def archive(self, entry: Entry, fetched: Fetched) -> None:
        self.warc.write(entry.url, fetched.response, fetched.body)
        self.frontier.count("archived")
        self.frontier.set_meta("warc", list(self.warc.position()))


def counter_tables(counters: dict[str, int]) -> dict[str, dict[str, int]]:
    """``{"failed.timeout": 3, ...}`` -> ``{"failed": {"timeout": 3}, ...}``; every group present."""
    tables: dict[str, dict[str, int]] = {group: {} for group in COUNTER_GROUPS}
    for name, value in sorted(counters.items()):
        group, _, kind = name.partition(".")
        if kind:
            tables.setdefault(group, {})[kind] = value
    return tables


async def _crawl(config: CrawlConfig, frontier: Frontier, warc: RotatingWarc) -> Crawler:
    limits = httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency)
    async with httpx.AsyncClient(headers={"User-Agent": config.user_agent}, timeout=config.timeout_s,
                                 follow_redirects=False, limits=limits) as client:
        crawler = Crawler(config, client, frontier, warc)
        await crawler.run()
    return crawler


def crawl(config: CrawlConfig, work_dir: Path) -> dict[str, Any]:
    """Crawl from ``config.seeds`` into ``work_dir`` (``frontier.sqlite`` and ``warc/``), continuing
    a crawl an earlier process left there. Returns the crawl's stats; the WARC files are
    ``warc_files(work_dir)``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    frontier = Frontier(work_dir / STATE_FILE)
    warc = RotatingWarc(work_dir / "warc", config.warc_max_bytes)
    try:
        index, offset = frontier.get_meta("warc", [0, 0])
        warc.resume(index, offset)
        if frontier.counters["pages_fetched"]:
            log.info("crawl: resuming (%d pages fetched before)", frontier.counters["pages_fetched"])
        crawler = asyncio.run(_crawl(config, frontier, warc))
        counters = dict(frontier.counters)
        states = frontier.state_counts()
    finally:
        warc.close()
        frontier.close()
    return {
        "pages_fetched": counters.get("pages_fetched", 0),
        "pages_archived": counters.get("archived", 0),
        "bytes_fetched": counters.get("bytes_fetched", 0),
        "hosts": len(crawler.hosts),
        "urls": states,
        **counter_tables(counters),
        "errors": crawler.errors[:20],
    }


def warc_files(work_dir: Path) -> list[Path]:
    return sorted(p for p in (work_dir / "warc").glob("pages-*.warc.gz") if p.stat().st_size > 0)
