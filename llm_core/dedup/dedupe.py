"""Exact and near-duplicate removal on one machine with datasketch.

The first document of a duplicate group (in input order) is kept; the others go to
``rejected/`` with ``reason`` (``exact_duplicate`` / ``near_duplicate``) and
``dup_cluster``, the id of the document they duplicate. The kept documents also carry
``dup_cluster`` (their own id), so a cluster can be read back from either side.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from datasketch import MinHash, MinHashLSH

from llm_core.dedup.config import DedupeConfig
from llm_core.documents import DOCS_DIR, REJECTED_DIR, read_documents, write_documents
from llm_core.errors import StageError

STAGE = "dedupe"
log = logging.getLogger(__name__)

_WORD = re.compile(r"\w+", re.UNICODE)


def normalise(text: str) -> str:
    """Case- and whitespace-insensitive form used for the exact-duplicate hash."""
    return " ".join(text.lower().split())


def shingles(text: str, size: int) -> set[bytes]:
    """Word n-grams of the lower-cased text (short texts give one shingle of all their words)."""
    words = _WORD.findall(text.lower())
    if len(words) <= size:
        return {" ".join(words).encode()}
    return {" ".join(words[i : i + size]).encode() for i in range(len(words) - size + 1)}


def minhashes(texts: list[str], config: DedupeConfig) -> list[MinHash]:
    # MinHash.bulk hashes a whole batch at once: ~10x faster than update() in a loop,
    # same values (STACK_NOTES).
    return MinHash.bulk([shingles(t, config.shingle_size) for t in texts], num_perm=config.num_perm, seed=config.seed)


def find_duplicates(texts: list[str], ids: list[str], config: DedupeConfig) -> tuple[list[str | None], list[str | None]]:
    """Per document: the reason it is a duplicate (or None) and the id of the document it duplicates."""
    reasons: list[str | None] = [None] * len(texts)
    clusters: list[str | None] = list(ids)
    if config.exact:
        first_by_hash: dict[bytes, int] = {}
        for i, text in enumerate(texts):
            digest = hashlib.sha256(normalise(text).encode()).digest()
            if digest in first_by_hash:
                reasons[i] = "exact_duplicate"
                clusters[i] = ids[first_by_hash[digest]]
            else:
                first_by_hash[digest] = i
    if config.near:
        # Keyed by row, not id: two rows may share an id (the same URL from two sources).
        candidates = [i for i in range(len(texts)) if reasons[i] is None]
        lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)
        signatures = minhashes([texts[i] for i in candidates], config)
        for i, signature in zip(candidates, signatures):
            matches = lsh.query(signature)
            if matches:
                reasons[i] = "near_duplicate"
                clusters[i] = ids[min(matches)]  # the earliest kept document
            else:
                lsh.insert(i, signature)
    return reasons, clusters


def dedupe(config: DedupeConfig, docs_dir: Path, out_dir: Path) -> dict[str, Any]:
    table = read_documents(docs_dir)
    if table.num_rows == 0:
        raise StageError(STAGE, f"no input documents in {docs_dir}")
    texts = table.column("text").to_pylist()
    ids = table.column("id").to_pylist()
    reasons, clusters = find_duplicates(texts, ids, config)
    table = table.append_column("dup_cluster", pa.array(clusters, pa.string()))
    is_dup = np.array([r is not None for r in reasons])
    kept = table.filter(pa.array(~is_dup))
    rejected = table.filter(pa.array(is_dup)).append_column(
        "reason", pa.array([r for r in reasons if r is not None], pa.string())
    )
    write_documents(kept, out_dir / DOCS_DIR)
    write_documents(rejected, out_dir / REJECTED_DIR)
    dropped = {r: reasons.count(r) for r in ("exact_duplicate", "near_duplicate")}
    log.info("dedupe: %d in, %d kept, dropped %s", table.num_rows, kept.num_rows, dropped)
    return {"docs_in": table.num_rows, "docs_out": kept.num_rows, "dropped": dropped}
