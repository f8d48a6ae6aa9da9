"""The documents contract every data stage reads and writes.

Documents are Parquet with one base schema; stages add their own signal columns
(``dup_cluster``, ``quality_*``...). Rejected documents keep every column plus ``reason``,
so nothing a filter drops is lost.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

DOCS_DIR = "docs"
REJECTED_DIR = "rejected"

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

