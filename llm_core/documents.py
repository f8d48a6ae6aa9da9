"""The documents contract every data stage reads and writes.

Documents are Parquet with one base schema; stages add their own signal columns
(``dup_cluster``, ``gopher_*``...). Rejected documents keep every column plus ``reason``,
``rule`` (what dropped them) and ``reason_value`` (the value that failed), so nothing a
stage drops is lost and every drop can be explained: :func:`write_split` is the one place
that writes that split, for every document stage.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from llm_core.errors import StageError

DOCS_DIR = "docs"
REJECTED_DIR = "rejected"
# The verdict columns: null on kept documents, set on rejected ones.
REASON = "reason"
RULE = "rule"
REASON_VALUE = "reason_value"
VERDICT_COLUMNS = (REASON, RULE, REASON_VALUE)

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("source", pa.string()),
        pa.field("fetched_at", pa.timestamp("us", tz="UTC")),
        pa.field("text", pa.string()),
        pa.field("title", pa.string()),
        pa.field("lang", pa.string()),
        pa.field("lang_score", pa.float32()),
        # From the page, when it has them (the crawl's extraction): its publication date as
        # trafilatura finds it (ISO ``YYYY-MM-DD``) and the language it declares (``<html lang>``,
        # Content-Language), which the language filter may compare with what it detects.
        pa.field("date", pa.string()),
        pa.field("lang_hint", pa.string()),
    ]
)


def document_id(url: str) -> str:
    """Stable id of a document: the same URL gets the same id in every run."""
    return hashlib.sha256(url.encode()).hexdigest()[:20]


def write_documents(table: pa.Table, directory: Path, name: str = "part-00000.parquet") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    pq.write_table(table, path, compression="zstd")
    return path


def read_documents(directory: Path, columns: list[str] | None = None) -> pa.Table:
    """Read every Parquet part under ``directory`` (Spark's ``_SUCCESS``/``.crc`` files are skipped)."""
    files = sorted(p for p in Path(directory).glob("*.parquet"))
    if not files:
        return DOCUMENT_SCHEMA.empty_table() if columns is None else DOCUMENT_SCHEMA.empty_table().select(columns)
    return pa.concat_tables(pq.read_table(f, columns=columns) for f in files)



def write_split(annotated: Any, out_dir: Path, stage: str, drop_columns: tuple[str, ...] = (),
                hint: str = "") -> dict[str, Any]:
    """Write a Spark DataFrame of judged documents: kept ones (``reason`` null) to ``docs/``
    without the verdict columns, rejected ones to ``rejected/`` with them; ``drop_columns``
    (internal bookkeeping) go from both. Returns the document counts, in total and dropped
    per ``reason``, and per ``rule``. Pass a persisted DataFrame: it is read three times.

    Nothing kept is an error (no later stage can use an empty corpus), raised before anything
    is written, with the counts by reason and ``hint`` on what to change."""
    from pyspark.sql import functions as F

    counts = annotated.groupBy(RULE, REASON).count().collect()
    dropped: dict[str, int] = {}
    by_rule: dict[str, int] = {}
    docs_out = 0
    for row in counts:
        if row[REASON] is None:
            docs_out += row["count"]
        else:
            dropped[row[REASON]] = dropped.get(row[REASON], 0) + row["count"]
            by_rule[row[RULE]] = by_rule.get(row[RULE], 0) + row["count"]
    if docs_out == 0:
        raise StageError(stage, f"all {sum(dropped.values())} documents were filtered out "
                                f"(by reason: {dict(sorted(dropped.items()))}){'; ' + hint if hint else ''}")
    rows = annotated.drop(*drop_columns)
    rows.where(F.col(REASON).isNull()).drop(*VERDICT_COLUMNS).write.parquet(str(out_dir / DOCS_DIR))
    rows.where(F.col(REASON).isNotNull()).write.parquet(str(out_dir / REJECTED_DIR))
    return {
        "docs_in": docs_out + sum(dropped.values()),
        "docs_out": docs_out,
        "dropped": dict(sorted(dropped.items())),
        "dropped_by_rule": dict(sorted(by_rule.items())),
    }
