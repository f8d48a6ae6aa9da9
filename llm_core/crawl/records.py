"""The two steps of the ingest job that run in Spark's Python workers, on Arrow batches.

:func:`read_inputs` turns input files into records (pages to extract, texts that need
none); :func:`extract_records` turns records into documents. Both count what they skip and
send the counts downstream as rows of kind ``stats`` (JSON in ``text``), so the job's one
write carries the statistics too. Batches are cut by rows and bytes, so memory stays
bounded whatever the size of a file.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from llm_core.crawl.config import LocalCorpus
from llm_core.crawl.extract import extract
from llm_core.crawl.local import Text, read_local
from llm_core.crawl.warc_read import Page, read_archive
from llm_core.documents import DOCUMENT_SCHEMA, document_id

KIND = "_kind"
PAGE_KIND, TEXT_KIND, STATS_KIND, DOC_KIND = "page", "text", "stats", "doc"
STATS_ID = "<stats>"
# A read batch is cut at whichever comes first.
BATCH_ROWS, BATCH_BYTES, DOCS_PER_BATCH = 64, 32 << 20, 256

RECORD_SCHEMA = pa.schema([
    pa.field(KIND, pa.string()), pa.field("source", pa.string()), pa.field("file", pa.string()),
    pa.field("seq", pa.int64()), pa.field("url", pa.string()), pa.field("doc_id", pa.string()),
    pa.field("fetched_at", pa.timestamp("us", tz="UTC")), pa.field("body", pa.binary()),
    pa.field("http_charset", pa.string()), pa.field("content_language", pa.string()),
    pa.field("text", pa.string()),
])
OUTPUT_SCHEMA = DOCUMENT_SCHEMA.append(pa.field(KIND, pa.string()))


@dataclass(frozen=True)
class Input:
    """One input file and the source it belongs to (``corpus``: how to read a local one)."""

    source: str
    path: str
    corpus: LocalCorpus | None = None


def read_inputs(batches: Iterable[pa.RecordBatch], inputs: list[Input], groups: list[list[int]],
                content_types: tuple[str, ...]) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` step 1: each id in ``batches`` names a group of ``inputs``; their records out."""
    for batch in batches:
        for group in batch.column(0).to_pylist():
            for index in groups[group]:
                yield from _read_file(inputs[index], content_types)


def _read_file(item: Input, content_types: tuple[str, ...]) -> Iterator[pa.RecordBatch]:
    path = Path(item.path)
    outcomes = read_archive(path, content_types) if item.corpus is None else read_local(path, item.corpus)
    rows: list[dict[str, Any]] = []
    size, skipped, records = 0, Counter(), 0
    for seq, outcome in enumerate(outcomes):
        records += 1
        if isinstance(outcome, str):
            skipped[outcome] += 1
            continue
        rows.append(_record(item, seq, outcome))
        size += len(rows[-1].get("body") or b"") + len(rows[-1].get("text") or "")
        if len(rows) >= BATCH_ROWS or size >= BATCH_BYTES:
            yield pa.RecordBatch.from_pylist(rows, schema=RECORD_SCHEMA)
            rows, size = [], 0
    rows.append({KIND: STATS_KIND, "source": item.source, "file": item.path, "seq": -1,
                 "text": json.dumps({"source": item.source, "file": item.path, "records": records,
                                     "skipped": dict(skipped)})})
    yield pa.RecordBatch.from_pylist(rows, schema=RECORD_SCHEMA)


def _record(item: Input, seq: int, outcome: Page | Text) -> dict[str, Any]:
    common = {"source": item.source, "file": item.path, "seq": seq}
    if isinstance(outcome, Text):
        return {KIND: TEXT_KIND, **common, "url": outcome.url, "doc_id": outcome.doc_id, "text": outcome.text}
    return {KIND: PAGE_KIND, **common, "url": outcome.url or None, "fetched_at": outcome.fetched_at,
            "body": outcome.body, "http_charset": outcome.http_charset,
            "content_language": outcome.content_language}


def extract_records(batches: Iterable[pa.RecordBatch], min_text_chars: int) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` step 2: pages extracted, texts passed on, counts per file passed on
    and added to (documents kept, characters, pages without enough text)."""
    tally: dict[tuple[str, str], dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for batch in batches:
        for row in batch.to_pylist():
            if row[KIND] == STATS_KIND:
                out.append(_stats_row(row["text"]))
                continue
            counts = tally.setdefault((row["source"], row["file"]),
                                      {"source": row["source"], "file": row["file"], "docs_out": 0,
                                       "chars_out": 0, "skipped": Counter()})
            doc = document(row, min_text_chars)
            if isinstance(doc, str):
                counts["skipped"][doc] += 1
                continue
            counts["docs_out"] += 1
            counts["chars_out"] += len(doc["text"])
            out.append(doc)
            if len(out) >= DOCS_PER_BATCH:
                yield pa.RecordBatch.from_pylist(out, schema=OUTPUT_SCHEMA)
                out = []
    out += [_stats_row(json.dumps({**counts, "skipped": dict(counts["skipped"])})) for counts in tally.values()]
    yield pa.RecordBatch.from_pylist(out, schema=OUTPUT_SCHEMA)


def document(row: dict[str, Any], min_text_chars: int) -> dict[str, Any] | str:
    """A record as a row of the documents schema, or why it yields none. A page's URL is
    the one it was fetched from; a local HTML file's, its canonical URL or else its path's."""
    base = {"source": row["source"], "fetched_at": row["fetched_at"], "lang": None, "lang_score": None,
            KIND: DOC_KIND}
    if row[KIND] == TEXT_KIND:
        return {**base, "id": row["doc_id"], "url": row["url"], "text": row["text"], "title": None,
                "date": None, "lang_hint": None}
    page = extract(row["body"], row["url"], http_charset=row["http_charset"],
                   content_language=row["content_language"], min_text_chars=min_text_chars)
    if isinstance(page, str):
        return page
    url = page["url"] or (Path(row["file"]).as_uri() if row["source"] == "local" else None)
    return {**base, "id": document_id(url or f"{row['file']}#{row['seq']}"), "url": url, "text": page["text"],
            "title": page["title"], "date": page["date"], "lang_hint": page["lang_hint"]}


def _stats_row(counts_json: str) -> dict[str, Any]:
    return {"id": STATS_ID, KIND: STATS_KIND, "text": counts_json}
