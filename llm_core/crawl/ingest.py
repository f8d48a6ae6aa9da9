"""Documents from every source of the crawl stage, in one Spark job.

The crawler's own WARC files (source ``crawl``), the WARC files of ``crawl.warc``
(``warc``) and the corpora of ``crawl.local`` (``local``) all go through the same job:

1. the driver lists the files (a glob or folder that matches nothing is an error naming it)
   and checks each can hold what it should (a WARC that is not one, a JSONL file without
   the text field: errors naming the file) before Spark starts;
2. read: one task per file (``llm_core.crawl.records``), yielding the candidate records;
   small files (a folder of HTML pages) are packed into tasks of about ``TASK_BYTES``, so
   a hundred thousand pages are not a hundred thousand tasks;
3. extract: trafilatura's main text and metadata, in tasks over those records. With fewer
   files than cores, the records are first spread over the cores (hashed on file and
   position), so a crawl that wrote a single WARC file still uses every core;
4. write: documents to ``docs/`` (Parquet, ``DOCUMENT_SCHEMA``); each task's counts travel in
   the same job as rows of their own, written apart (``partitionBy``), so nothing is read
   twice and no document is held back waiting for the counts.

Both steps run inside ``mapInArrow`` on Arrow batches of bounded size: a 1 GB WARC file is
never in a worker's memory at once. Duplicates (the same URL in two WARC files) are left to
the dedupe stage.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from llm_core.crawl import local
from llm_core.crawl.config import CrawlConfig
from llm_core.crawl.records import (
    DOC_KIND,
    KIND,
    OUTPUT_SCHEMA,
    RECORD_SCHEMA,
    STATS_KIND,
    Input,
    extract_records,
    read_inputs,
)
from llm_core.crawl.warc_read import archive_format
from llm_core.documents import DOCS_DIR
from llm_core.errors import StageError
from llm_core.spark import SparkConfig, get_spark

STAGE = "crawl"
PARTS_DIR = "_ingest"
# Rows per Arrow batch handed to an extraction worker: pages are up to a few MB each.
BATCH_ROWS = 64
# Files smaller than this share a read task (a WARC file of Common Crawl, ~1 GB, has its own).
TASK_BYTES = 64 << 20
# Extraction tasks per core when records are spread: pages differ in cost, and a core that
# finishes early takes the next task instead of waiting for the slowest half.
TASKS_PER_CORE = 4
log = logging.getLogger(__name__)


def ingest(config: CrawlConfig, spark_config: SparkConfig, crawl_warcs: list[Path], out_dir: Path) -> dict[str, Any]:
    """Extract the documents of every source into ``out_dir/docs``; return the counts
    (``docs_out``, ``chars_out``, ``records_read``, ``records_skipped`` by reason, ``files``,
    per ``sources`` and ``per_file``). Nothing kept is an error, with the counts by reason."""
    inputs = list_inputs(config, crawl_warcs)
    for item in inputs:
        preflight(item)
    spark = get_spark(spark_config)
    parts = out_dir / PARTS_DIR
    cores = spark.sparkContext.defaultParallelism
    groups = pack(inputs, TASK_BYTES)
    with _arrow_batch_rows(spark, BATCH_ROWS):
        _run(spark, inputs, groups, config, parts, cores)
    stats = summarise(_task_counts(parts / f"{KIND}={STATS_KIND}"), inputs)
    stats["tasks"] = {"read": len(groups), "extract": len(groups) if len(groups) >= cores else cores * TASKS_PER_CORE}
    if stats["docs_out"] == 0:
        raise StageError(STAGE, f"no documents from {stats['records_read']} records in {len(inputs)} file(s) "
                                f"(skipped by reason: {stats['records_skipped']}); {_hint(stats, config)}")
    (parts / f"{KIND}={DOC_KIND}").rename(out_dir / DOCS_DIR)
    shutil.rmtree(parts)
    log.info("ingest: %d files, %d records, %d documents, skipped %s", len(inputs), stats["records_read"],
             stats["docs_out"], stats["records_skipped"])
    return stats


def list_inputs(config: CrawlConfig, crawl_warcs: list[Path]) -> list[Input]:
    """Every input file once (the first source naming it wins), in a stable order."""
    items = [Input("crawl", str(Path(p).resolve())) for p in crawl_warcs]
    for pattern in config.warc:
        items += [Input("warc", str(p)) for p in expand(pattern, "crawl.warc")]
    for corpus in config.local:
        items += [Input("local", str(p), corpus) for p in expand(corpus.path, "crawl.local")]
    if not items:
        raise StageError(STAGE, "nothing to ingest: no WARC file from the crawl, crawl.warc or crawl.local")
    unique: dict[str, Input] = {}
    for item in items:
        unique.setdefault(item.path, item)
    return list(unique.values())


def expand(pattern: str, key: str) -> list[Path]:
    """The files a path, folder (every file under it, hidden ones aside) or glob names."""
    import glob

    path = Path(pattern).expanduser()
    if any(c in pattern for c in "*?["):
        matches = [Path(m) for m in glob.glob(str(path), recursive=True)]
    elif path.is_dir():
        matches = [p for p in path.rglob("*") if not any(part.startswith(".") for part in p.relative_to(path).parts)]
    elif path.exists():
        matches = [path]
    else:
        raise StageError(STAGE, f"{key}: {pattern!r} does not exist")
    files = sorted(p.resolve() for p in matches if p.is_file())
    if not files:
        raise StageError(STAGE, f"{key}: {pattern!r} matches no file")
    return files


def preflight(item: Input) -> None:
    """Fail before any work on a file that cannot be what its source says (names the file)."""
    if item.corpus is None:
        archive_format(Path(item.path))
    else:
        local.preflight(Path(item.path), item.corpus)


def pack(inputs: list[Input], task_bytes: int) -> list[list[int]]:
    """Input indices grouped into read tasks: consecutive files until ``task_bytes``."""
    groups: list[list[int]] = [[]]
    size = 0
    for index, item in enumerate(inputs):
        if size >= task_bytes:
            groups.append([])
            size = 0
        groups[-1].append(index)
        size += Path(item.path).stat().st_size
    return groups


def _run(spark: Any, inputs: list[Input], groups: list[list[int]], config: CrawlConfig, parts: Path,
         cores: int) -> None:
    """The job: one read task per group of files, extraction spread over the cores, one write."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    tasks = spark.range(0, len(groups), 1, numPartitions=len(groups))
    read = partial(read_inputs, inputs=inputs, groups=groups, content_types=tuple(config.content_types))
    records = tasks.mapInArrow(read, from_arrow_schema(RECORD_SCHEMA))
    if len(groups) < cores:
        records = records.repartition(cores * TASKS_PER_CORE, F.col("file"), F.col("seq"))
    docs = records.mapInArrow(partial(extract_records, min_text_chars=config.min_text_chars),
                              from_arrow_schema(OUTPUT_SCHEMA))
    docs.write.mode("overwrite").partitionBy(KIND).parquet(str(parts))


@contextmanager
def _arrow_batch_rows(spark: Any, rows: int) -> Iterator[None]:
    """Arrow batches of at most ``rows`` rows for this job (Spark's default, 10,000 pages
    of HTML, could be gigabytes), the session's own setting restored afterwards."""
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key, None)
    spark.conf.set(key, str(rows))
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)


def _task_counts(directory: Path) -> list[dict[str, Any]]:
    """The counts every task wrote (one JSON object per row)."""
    import pyarrow.parquet as pq

    if not directory.is_dir():
        return []
    return [json.loads(text) for text in pq.read_table(directory, columns=["text"]).column("text").to_pylist()]


def summarise(counts: list[dict[str, Any]], inputs: list[Input]) -> dict[str, Any]:
    """The tasks' counts added up per file, per source and in all."""
    per_file = {item.path: {"file": item.path, "source": item.source, "records": 0, "docs_out": 0, "chars_out": 0,
                            "skipped": Counter()} for item in inputs}
    for row in counts:
        entry = per_file[row["file"]]
        for key in ("records", "docs_out", "chars_out"):
            entry[key] += row.get(key, 0)
        entry["skipped"].update(row.get("skipped", {}))
    sources: dict[str, dict[str, Any]] = {}
    for entry in per_file.values():
        total = sources.setdefault(entry["source"], {"files": 0, "records": 0, "docs_out": 0, "chars_out": 0,
                                                     "skipped": Counter()})
        total["files"] += 1
        for key in ("records", "docs_out", "chars_out", "skipped"):
            total[key] += entry[key]
    skipped = sum((s["skipped"] for s in sources.values()), Counter())
    for entry in [*per_file.values(), *sources.values()]:
        entry["skipped"] = dict(sorted(entry["skipped"].items()))
    return {
        "docs_out": sum(s["docs_out"] for s in sources.values()),
        "chars_out": sum(s["chars_out"] for s in sources.values()),
        "records_read": sum(s["records"] for s in sources.values()),
        "records_skipped": dict(sorted(skipped.items())),
        "files": len(inputs),
        "sources": dict(sorted(sources.items())),
        "per_file": list(per_file.values()),
    }


def _hint(stats: dict[str, Any], config: CrawlConfig) -> str:
    """What to change when nothing was kept, from the commonest reason."""
    skipped = stats["records_skipped"]
    reason = max(skipped, key=skipped.get) if skipped else None
    return {
        "too_little_text": f"pages had less main text than crawl.min_text_chars ({config.min_text_chars})",
        "not_html": f"no response had a type in crawl.content_types ({config.content_types})",
        "not_response": "the WARC files hold no response records",
        "http_status": "no response had HTTP status 200",
        "missing_field": "rows lack the text field (crawl.local[].text_field)",
    }.get(reason, "check the input files")
