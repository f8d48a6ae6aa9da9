"""The crawl stage's build: collect from every source the config names, extract documents once.

A live crawl (``seeds``) writes WARC files into the output's resumable work folder
(llm_core.storage.work_dir), so a killed or retried build continues it; then one Spark job
(llm_core.crawl.ingest) extracts documents from those WARC files, the config's own WARC
files and its local corpora alike. The crawl's WARC files are moved into the output last,
so a failure in extraction never costs the crawl.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_core.crawl.crawler import crawl, warc_files
from llm_core.crawl.fetch import RETRYABLE
from llm_core.errors import StageError
from llm_core.storage import work_dir

if TYPE_CHECKING:
    from llm_core.config import PipelineConfig

STAGE = "crawl"
WARC_DIR = "warc"


def collect(config: "PipelineConfig", out: Path) -> dict[str, Any]:
    from llm_core.crawl.ingest import ingest  # Spark and the extractors: loaded when a build runs

    section = config.crawl
    if not section.has_sources:
        raise StageError(STAGE, "no sources: set crawl.seeds (a live crawl), crawl.warc (WARC files) "
                                "or crawl.local (local corpora) in the config")
    crawl_stats: dict[str, Any] = {}
    warcs: list[Path] = []
    if section.seeds:
        work = work_dir(out)
        crawl_stats = crawl(section, work)
        check_crawl(crawl_stats, len(section.seeds))
        warcs = warc_files(work)
    stats = ingest(section, config.spark, warcs, out)
    if warcs:
        (out / WARC_DIR).mkdir()
        for path in warcs:
            shutil.move(path, out / WARC_DIR / path.name)
    return {**stats, **({"crawl": crawl_stats, "pages_fetched": crawl_stats["pages_fetched"]} if crawl_stats else {})}


def check_crawl(stats: dict[str, Any], seeds: int) -> None:
    """A crawl that got no page (HTTP 200) is an error; retried when every failure may pass (a site down)."""
    if stats.get("status", {}).get("200"):
        return
    failures = stats.get("failed", {})
    skipped = stats.get("skipped", {})
    outcomes = ", ".join(f"{k}={v}" for k, v in {**failures, **skipped}.items()) or "nothing to fetch"
    detail = "; ".join(stats["errors"][:5])
    # A host down or overloaded (its robots.txt failing counts too) may answer the task's retry.
    retryable = bool(failures or skipped) and all(kind in RETRYABLE for kind in failures) \
        and all(reason == "host_unavailable" for reason in skipped)
    raise StageError(
        STAGE, f"none of the {seeds} seed URL(s) gave a page to keep ({outcomes}{'; ' + detail if detail else ''}); "
        "check crawl.seeds and that the site is up", retryable=retryable)
