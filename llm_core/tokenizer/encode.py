"""Encoding the corpus into packed shards, in parallel over Parquet row groups.

The work is cut into units, one per row group of the documents' Parquet parts, numbered in
file order. Each unit is encoded on its own, as a Spark task (``spark:`` decides how many
run at once: ``local[*]`` uses every core, a cluster every executor) or in this process,
into one file of token ids per split in a staging folder; the units' files are then
appended, in unit order, to the shards. So the shards are the same bytes whatever the
number of workers and whichever unit finishes first, a worker holds one row group at most,
and this process holds nothing but an open file. On a cluster, the documents and the
output folder must be on a filesystem every executor sees (as for Spark's own Parquet).

A document's literal special-token text (``<|endoftext|>`` typed in a page) is encoded as
text: the only end-of-text ids in the shards are the ones ending each document.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from llm_core.tokenizer.corpus import Splitter, parquet_files
from llm_core.tokenizer.shards import ShardWriter

if TYPE_CHECKING:
    from llm_core.spark import SparkConfig

SPLITS = ("train", "val")
COPY_CHUNK = 1 << 24  # tokens moved at a time from a unit's file to the shards


@dataclass(frozen=True)
class Unit:
    index: int
    path: str
    row_group: int


@dataclass(frozen=True)
class EncodeJob:
    """What every unit needs: small and picklable (a Spark task gets a copy)."""

    tokenizer_file: str
    splitter: Splitter
    eot_id: int
    dtype: str
    staging: str
    batch_docs: int = 256
    # In a worker process of its own, one thread: the parallelism is the workers'.
    single_thread: bool = False


def units_of(docs_dir: Path) -> list[Unit]:
    files = parquet_files(docs_dir)
    groups = [(str(f), g) for f in files for g in range(pq.ParquetFile(f).metadata.num_row_groups)]
    return [Unit(i, path, group) for i, (path, group) in enumerate(groups)]


def _tokenizer(path: str) -> Tokenizer:
    """Loaded once per worker process (Spark reuses its Python workers across tasks)."""
    return _load(path, os.stat(path).st_mtime_ns)


@lru_cache(maxsize=2)
def _load(path: str, mtime_ns: int) -> Tokenizer:
    tokenizer = Tokenizer.from_file(path)
    tokenizer.encode_special_tokens = True  # special-token text inside a document stays text
    return tokenizer


def unit_file(staging: str, index: int, split: str) -> Path:
    return Path(staging) / f"{index:06d}-{split}.bin"


def encode_unit(job: EncodeJob, unit: Unit) -> dict[str, Any]:
    """Encode one row group: each document's ids then the end-of-text id, appended to this
    unit's file for its split. Returns documents, tokens and text bytes per split."""
    if job.single_thread:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # read by tokenizers at each call
    tokenizer, dtype = _tokenizer(job.tokenizer_file), np.dtype(job.dtype)
    counts = {split: {"docs": 0, "tokens": 0, "bytes": 0} for split in SPLITS}
    files: dict[str, Any] = {}
    part = pq.ParquetFile(unit.path)
    try:
        for batch in part.iter_batches(batch_size=job.batch_docs, row_groups=[unit.row_group], columns=["id", "text"]):
            sizes = pc.binary_length(batch.column("text")).to_pylist()
            texts = batch.column("text").to_pylist()
            chosen: dict[str, list[int]] = {split: [] for split in SPLITS}
            for i, doc_id in enumerate(batch.column("id").to_pylist()):
                if sizes[i]:  # documents without text are left out, as the census leaves them out
                    chosen["val" if job.splitter.is_validation(doc_id) else "train"].append(i)
            for split, rows in chosen.items():
                if not rows:
                    continue
                encodings = tokenizer.encode_batch_fast([texts[i] for i in rows], add_special_tokens=False)
                count = sum(len(e.ids) for e in encodings) + len(rows)
                ids = np.fromiter(chain.from_iterable(chain(e.ids, (job.eot_id,)) for e in encodings), dtype, count)
                if split not in files:
                    files[split] = unit_file(job.staging, unit.index, split).open("wb")
                ids.tofile(files[split])
                counts[split]["docs"] += len(rows)
                counts[split]["tokens"] += count
                counts[split]["bytes"] += sum(sizes[i] for i in rows)
    finally:
        for f in files.values():
            f.close()
    return counts


def encode_units(job: EncodeJob, units: list[Unit], spark: "SparkConfig | None") -> list[dict[str, Any]]:
    """Every unit's counts, in unit order: as Spark tasks (one per unit), or here when
    ``spark`` is None (``tokenizers`` then spreads each batch over this machine's cores)."""
    if spark is None:
        return [encode_unit(job, unit) for unit in units]
    from llm_core.spark import get_spark

    context = get_spark(spark).sparkContext
    task = partial(encode_unit, replace(job, single_thread=True))
    return context.parallelize(units, len(units)).map(task).collect()


def assemble(job: EncodeJob, units: list[Unit], counts: list[dict[str, Any]], shard_dir: Path,
             shard_tokens: int) -> dict[str, dict[str, Any]]:
    """Append the units' files, in order, to each split's shards; remove them as they are used."""
    splits = {}
    for split in SPLITS:
        writer = ShardWriter(shard_dir, split, np.dtype(job.dtype), shard_tokens, job.eot_id)
        for unit in units:
            path = unit_file(job.staging, unit.index, split)
            if path.is_file() and path.stat().st_size:
                ids = np.memmap(path, dtype=job.dtype, mode="r")
                for start in range(0, len(ids), COPY_CHUNK):
                    writer.write(ids[start : start + COPY_CHUNK])
                del ids
            path.unlink(missing_ok=True)
        files = writer.close()
        totals = {key: sum(c[split][key] for c in counts) for key in ("docs", "tokens", "bytes")}
        assert totals["tokens"] == writer.tokens and totals["docs"] == sum(s["docs"] for s in writer.index), \
            f"{split}: the units' counts and the shards disagree"
        splits[split] = {"files": files, **totals, "shards": writer.index}
    return splits


def encode_corpus(tokenizer_file: Path, docs_dir: Path, shard_dir: Path, splitter: Splitter, eot_id: int,
                  dtype: np.dtype, shard_tokens: int, spark: "SparkConfig | None" = None) -> dict[str, dict[str, Any]]:
    """Encode every document under ``docs_dir`` into ``shard_dir``; per split: its shard
    files, documents, tokens (end-of-text included), text bytes and the shard index."""
    staging = shard_dir.parent / f".{shard_dir.name}-units"
    staging.mkdir(parents=True, exist_ok=True)
    job = EncodeJob(str(tokenizer_file), splitter, eot_id, np.dtype(dtype).name, str(staging))
    try:
        units = units_of(docs_dir)
        counts = encode_units(job, units, spark)
        return assemble(job, units, counts, shard_dir, shard_tokens)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
