"""External evaluation sets (``evaluate.datasets``): read into documents, then scored.

A text file is read as UTF-8 with its line endings made ``\\n`` (as Python's text mode
does: CRLF is how a file was stored, not text), and is one document or one per
blank-line-separated paragraph (stripped). JSON lines and Parquet give one document per
row, from ``text_field``. Rows or paragraphs without text are left out; a file that gives
no document at all is an error naming it, as is a file that is not UTF-8.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

from tokenizers import Tokenizer

from llm_core.errors import StageError
from llm_core.evaluate.config import EvalDataset
from llm_core.evaluate.metrics import document_score, language_model_metrics
from llm_core.evaluate.rolling import document_loglikelihoods

STAGE = "evaluate"  # the name errors carry (the stage row is llm_core.evaluate.STAGE)
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def dataset_path(dataset: EvalDataset) -> Path:
    return Path(dataset.path).expanduser()


def file_format(dataset: EvalDataset) -> str:
    if dataset.format != "auto":
        return dataset.format
    suffix = dataset_path(dataset).suffix.lower()
    return {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}.get(suffix, "text")


def read_utf8(path: Path, where: str) -> str:
    """A file's text; a missing file or bytes that are not UTF-8 stop with an error naming it."""
    if not path.is_file():
        raise StageError(STAGE, f"{where} is not a file")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise StageError(STAGE, f"{where} is not UTF-8 text ({error.reason} at byte offset {error.start})") from None


def load_documents(dataset: EvalDataset) -> list[str]:
    """The dataset's documents, in file order, the first ``max_docs`` of them."""
    path = dataset_path(dataset)
    where = f"evaluate.datasets[{dataset.name}]: {path}"
    if not path.is_file():
        raise StageError(STAGE, f"{where} is not a file")
    if path.stat().st_size == 0:
        raise StageError(STAGE, f"{where} is empty")
    kind = file_format(dataset)
    if kind == "parquet":
        docs = parquet_texts(path, dataset.text_field, where)
    else:
        text = read_utf8(path, where).replace("\r\n", "\n").replace("\r", "\n")
        if kind == "jsonl":
            docs = jsonl_texts(text, dataset.text_field, where)
        elif dataset.split == "paragraphs":
            docs = [p.strip() for p in PARAGRAPH_BREAK.split(text)]
        else:
            docs = [text]
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise StageError(STAGE, f"{where} has no text")
    return docs[: dataset.max_docs]


def json_lines(text: str, where: str) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of each non-blank line of JSON-lines text; a line that is not
    JSON stops with an error naming it."""
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            raise StageError(STAGE, f"{where} line {number} is not JSON ({error.msg})") from None


def jsonl_texts(text: str, field: str, where: str) -> list[str]:
    docs = []
    for number, row in json_lines(text, where):
        value = row.get(field) if isinstance(row, dict) else None
        if value is not None and not isinstance(value, str):
            raise StageError(STAGE, f"{where} line {number}: {field!r} is not a string")
        docs.append(value or "")
    return docs


def parquet_texts(path: Path, field: str, where: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as error:
        raise StageError(STAGE, f"{where} is not a Parquet file ({error})") from None
    kind = schema.field(field).type if field in schema.names else None
    if kind is None or not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise StageError(STAGE, f"{where} has no string column {field!r} (columns: {', '.join(schema.names)})")
    return [t or "" for t in pq.read_table(path, columns=[field]).column(field).to_pylist()]


def score_dataset(model, tokenizer: Tokenizer, dataset: EvalDataset, docs: list[str], eot_id: int,
                  batch_size: int) -> tuple[dict[str, Any], list[list[int]]]:
    """The dataset's metrics (llm_core.evaluate.metrics) and its documents' token ids."""
    block_size = model.config.block_size
    if dataset.stride is not None and dataset.stride > block_size:
        raise StageError(STAGE, f"evaluate.datasets[{dataset.name}].stride={dataset.stride} exceeds the model's "
                         f"block_size={block_size}")
    token_docs = [e.ids for e in tokenizer.encode_batch(docs, add_special_tokens=False)]
    kept = [(text, ids) for text, ids in zip(docs, token_docs) if ids]
    if not kept:
        raise StageError(STAGE, f"evaluate.datasets[{dataset.name}]: {dataset_path(dataset)} gives no tokens")
    sums = document_loglikelihoods(model, [ids for _, ids in kept], prefix_token=eot_id, stride=dataset.stride,
                                   batch_size=batch_size)
    scores = [document_score(text, nll, count) for (text, _), (nll, count) in zip(kept, sums)]
    metrics = language_model_metrics(scores)
    rounded = {k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()}
    return {**rounded, "stride": dataset.stride or block_size}, [ids for _, ids in kept]
