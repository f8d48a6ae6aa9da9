"""The crawl's durable state: frontier, seen URLs, counters and the WARC position, in SQLite.

A crawl killed half way (SIGKILL, a lost machine, a retried Prefect task) starts again from
this file and fetches nothing it already has. Every page's outcome is committed in one
transaction with the counters and the WARC file's end offset after its record, so state and
archive never disagree: on resume the WARC file is cut back to the committed offset (a record
written but not committed is dropped, its URL fetched again) and URLs that were in flight are
queued again. Memory stays bounded: the frontier and the seen set live in the file; the
crawler holds a small batch of each host's queue.

SQLite in WAL mode with ``synchronous=NORMAL``: a commit per page costs microseconds, and a
killed process loses nothing that was committed (only a power cut could).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# A URL's life: queued -> (fetched in memory) -> done | failed | skipped.
QUEUED, DONE, FAILED, SKIPPED = "queued", "done", "failed", "skipped"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS urls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL UNIQUE,
    host TEXT NOT NULL,
    depth INTEGER NOT NULL,
    hops INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS urls_queue ON urls (host, state, seq);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class Entry:
    """One URL to fetch: ``hops`` counts the redirects that led to it, ``not_before`` (epoch
    seconds) is when a retry may happen."""

    url: str
    host: str
    depth: int
    hops: int = 0
    attempts: int = 0
    not_before: float = 0.0


class Frontier:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        # What another life of this crawl left in flight is queued again.
        self.db.execute("UPDATE urls SET state=? WHERE state='leased'", (QUEUED,))
        self.counters: Counter[str] = Counter(dict(self.db.execute("SELECT name, value FROM counters")))
        self._pending: Counter[str] = Counter()
        # Pages fetched per host, for ``max_pages_per_host``.
        self.host_pages: Counter[str] = Counter(dict(self.db.execute(
            "SELECT host, COUNT(*) FROM urls WHERE state=? GROUP BY host", (DONE,))))

    # -- meta --------------------------------------------------------------------------
    def get_meta(self, name: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, name: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, json.dumps(value)))

    # -- the frontier --------------------------------------------------------------------
    def add(self, entries: list[Entry]) -> int:
        """Queue the URLs not seen before; returns how many were new. Not committed on its own:
        call inside :meth:`transaction` with the page they came from."""
        added = 0
        for e in entries:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO urls (url, host, depth, hops, state) VALUES (?, ?, ?, ?, ?)",
                (e.url, e.host, e.depth, e.hops, QUEUED))
            added += cursor.rowcount
        return added

    def lease(self, host: str, limit: int) -> list[Entry]:
        """The next queued URLs of ``host`` (oldest first), marked as held by this process."""
        rows = self.db.execute(
            "SELECT url, host, depth, hops, attempts, not_before FROM urls WHERE host=? AND state=? "
            "ORDER BY seq LIMIT ?", (host, QUEUED, limit)).fetchall()
        if rows:
            self.db.executemany("UPDATE urls SET state='leased' WHERE url=?", [(r[0],) for r in rows])
        return [Entry(*row) for row in rows]

    def queued_hosts(self) -> list[str]:
        return [h for (h,) in self.db.execute("SELECT DISTINCT host FROM urls WHERE state=?", (QUEUED,))]

    def finish(self, entry: Entry, state: str) -> None:
        if state == DONE:
            self.host_pages[entry.host] += 1
        self.db.execute("UPDATE urls SET state=?, attempts=? WHERE url=?", (state, entry.attempts, entry.url))

    def retry_later(self, entry: Entry) -> None:
        """Keep the entry held by this process but remember, for a resumed crawl, when it may be retried."""
        self.db.execute("UPDATE urls SET attempts=?, not_before=? WHERE url=?",
                        (entry.attempts, entry.not_before, entry.url))

    def state_counts(self) -> dict[str, int]:
        """URLs by outcome; ``left``: queued when the crawl stopped (the budget was spent)."""
        counts = dict(self.db.execute("SELECT state, COUNT(*) FROM urls GROUP BY state"))
        counts["left"] = counts.pop(QUEUED, 0) + counts.pop("leased", 0)
        return counts

    # -- counters ------------------------------------------------------------------------
    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n
        self._pending[name] += n

    def transaction(self) -> "_Transaction":
        """``with frontier.transaction(): ...``: one page's changes, committed together with the counters."""
        return _Transaction(self)

    def _flush_counters(self) -> None:
        if self._pending:
            self.db.executemany(
                "INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value=value+excluded.value",
                list(self._pending.items()))
            self._pending.clear()

    def close(self) -> None:
        self.db.close()


class _Transaction:
    def __init__(self, frontier: Frontier):
        self.frontier = frontier

    def __enter__(self) -> Frontier:
        self.frontier.db.execute("BEGIN")
        return self.frontier

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.frontier._flush_counters()
            self.frontier.db.execute("COMMIT")
        else:
            self.frontier.db.execute("ROLLBACK")
