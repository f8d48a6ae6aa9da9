"""Documents out of local corpora (``crawl.local``): HTML files, text files, JSONL, Parquet.

HTML files are handed on as pages (:class:`~llm_core.crawl.warc_read.Page`) and extracted
like crawled ones; the other formats already hold text (:class:`Text`). As in a WARC file,
each record is either a candidate or the reason it is not one (``undecodable``,
``malformed_line``, ``missing_field``, ``no_text``), so one bad line or file is counted
and skipped. A file that cannot hold the corpus at all (a JSONL file whose first object, or
a Parquet file whose schema, lacks ``text_field``) is a configuration error, raised by
:func:`preflight` before any work starts.

Ids are stable: the row's ``id_field`` if set, else a hash of the file path and line (JSONL,
1-based) or row (Parquet, 0-based); a text or HTML file's is its ``file://`` URL's (an HTML
file's canonical URL, when it names one). Rows get a URL only from ``url_field``: a made-up
one would make every row of a file a URL duplicate of the others.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_core.crawl.config import LocalCorpus
from llm_core.crawl.warc_read import GZIP_MAGIC, Page
from llm_core.documents import document_id
from llm_core.errors import StageError

UNDECODABLE, MALFORMED_LINE, MISSING_FIELD, NO_TEXT = "undecodable", "malformed_line", "missing_field", "no_text"
_PARQUET_BATCH_ROWS = 1024


@dataclass
class Text:
    """A document that needs no extraction."""

    doc_id: str
    url: str | None
    text: str


def preflight(path: Path, corpus: LocalCorpus) -> None:
    """Raise if ``path`` cannot hold ``corpus`` (a missing text field), naming file and field."""
    if corpus.format == "parquet":
        import pyarrow.parquet as pq

        names = set(pq.read_schema(path).names)
        fields = [corpus.text_field, corpus.id_field, corpus.url_field]
        missing = [f for f in fields if f and f not in names]
        if missing:
            raise StageError("crawl", f"{path} has no column {missing[0]!r} (columns: {sorted(names)}); "
                                      "set crawl.local[].text_field / id_field / url_field")
    elif corpus.format == "jsonl":
        first = next((row for _, row in _json_rows(path) if isinstance(row, dict)), None)
        if first is not None and corpus.text_field not in first:
            raise StageError("crawl", f"{path} has no field {corpus.text_field!r} (its first object has "
                                      f"{sorted(first)[:10]}); set crawl.local[].text_field")


def read_local(path: Path, corpus: LocalCorpus) -> Iterator[Page | Text | str]:
    """Every record of one local file, as a candidate or the reason it is skipped."""
    if corpus.format == "html":
        yield Page(url=None, fetched_at=None, body=_read_bytes(path))
    elif corpus.format == "text":
        yield _text_file(path)
    elif corpus.format == "jsonl":
        for line, row in _json_rows(path):
            yield _row(row, corpus, path, line) if isinstance(row, dict) else MALFORMED_LINE
    else:
        yield from _parquet_rows(path, corpus)


def _read_bytes(path: Path) -> bytes:
    """A file's bytes, gunzipped when it is gzip (saved pages are often ``.html.gz``)."""
    data = path.read_bytes()
    return gzip.decompress(data) if data[:3] == GZIP_MAGIC else data


def _text_file(path: Path) -> Text | str:
    """One document per file: UTF-8 if it is, else charset-normalizer's best guess; a file
    nothing decodes (binary, or no encoding fits) is ``undecodable``."""
    from charset_normalizer import from_bytes

    data = _read_bytes(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        best = from_bytes(data).best()
        if best is None:
            return UNDECODABLE
        text = str(best)
    if not text.strip():
        return NO_TEXT
    url = path.resolve().as_uri()
    return Text(doc_id=document_id(url), url=url, text=text)


def _json_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, the line's JSON value or None if it is not JSON); blank lines are left
    out but numbered, so the numbers are those an editor shows."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                yield number, json.loads(raw)
            except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
                yield number, None


def _row(row: dict[str, Any], corpus: LocalCorpus, path: Path, number: int) -> Text | str:
    """A JSONL object or Parquet row as a document, or why it is not one."""
    if corpus.text_field not in row:
        return MISSING_FIELD
    text = row[corpus.text_field]
    if not isinstance(text, str) or not text.strip():
        return NO_TEXT
    url = row.get(corpus.url_field) if corpus.url_field else None
    url = url if isinstance(url, str) and url else None
    given_id = row.get(corpus.id_field) if corpus.id_field else None
    doc_id = str(given_id) if given_id not in (None, "") else document_id(f"{path.resolve()}#{number}")
    return Text(doc_id=doc_id, url=url, text=text)


def _parquet_rows(path: Path, corpus: LocalCorpus) -> Iterator[Text | str]:
    """Rows in batches of about a thousand: a large file is never in memory at once."""
    import pyarrow.parquet as pq

    columns = list(dict.fromkeys(c for c in (corpus.text_field, corpus.id_field, corpus.url_field) if c))
    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=columns):
        for row in batch.to_pylist():
            yield _row(row, corpus, path, number)
            number += 1
