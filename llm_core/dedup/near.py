"""Near-duplicate pairs as Spark jobs: signatures, LSH candidates, verification.

1. ``sign``: one ``mapInArrow`` pass computes each Arrow batch's MinHash signatures
   together (``minhash.text_signatures``) and their band keys.
2. ``candidate_pairs``: documents sharing a band key are candidates; each bucket yields
   its pairs (all of them for small buckets, a star for huge ones), once per pair.
3. ``verified_edges``: a candidate becomes an edge only if the similarity estimated from
   the two full signatures (all ``num_perm`` slots, not the one band that matched)
   reaches ``candidate_threshold`` and, with ``verify_exact`` (the default), the exact
   Jaccard of the shingle sets reaches the threshold (without it, the estimate must).
   Banding decides which pairs are looked at; it never decides that a pair is a duplicate.

Nothing is collected on the driver; every step is a DataFrame.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from llm_core.dedup import minhash
from llm_core.dedup.config import DedupeConfig
from llm_core.dedup.shingles import normalise, shingles

ROW = "_row"


def candidate_threshold(config: DedupeConfig) -> float:
    """The similarity banding aims at and the signature pre-check needs. With exact
    verification it sits below the threshold: the 128-slot estimate of a pair at Jaccard 0.8
    is below 0.8 half the time, and 9 bands of 13 rows find it only 40 % of the time; the
    exact Jaccard then decides (benchmarks/dedup.py: recall 0.83 -> 0.96 at precision 0.95)."""
    if config.candidate_threshold is not None:
        return config.candidate_threshold
    return max(config.threshold - 0.1, 0.05) if config.verify_exact else config.threshold


def banding(config: DedupeConfig) -> tuple[int, int]:
    if config.bands is not None:
        return config.bands, config.rows
    return minhash.optimal_bands(candidate_threshold(config), config.num_perm,
                                 config.false_positive_weight, config.false_negative_weight)


def _shingles(text: str | None, config: DedupeConfig) -> set[bytes]:
    return shingles(text, config.shingle_size, config.shingle, config.nfkc)


def texts_of(batch: pa.RecordBatch, column: str = "text") -> list[str | None]:
    """The texts of an Arrow batch, decoded leniently: a Parquet file written elsewhere can
    hold bytes that are not UTF-8, and one such document must not fail the stage."""
    raw = batch.column(column).cast(pa.binary()).to_pylist()
    return [None if t is None else t.decode("utf-8", "replace") for t in raw]


def text_hashes(docs: Any, config: DedupeConfig) -> Any:
    """(``_row``, ``text``) -> (``_row``, ``hash``): SHA-256 of the normal form (exact duplicates)."""
    import hashlib

    schema = pa.schema([(ROW, pa.int64()), ("hash", pa.binary())])

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            digests = [hashlib.sha256(normalise(t, config.nfkc).encode("utf-8")).digest() for t in texts_of(batch)]
            yield pa.RecordBatch.from_arrays([batch.column(ROW), pa.array(digests, pa.binary())], schema=schema)

    return docs.select(ROW, "text").mapInArrow(run, "_row long, hash binary")


def sign(docs: Any, config: DedupeConfig) -> Any:
    """(``_row``, ``text``) -> (``_row``, ``sig`` binary, ``bands`` array<long>). A document
    without shingles gets no band keys: it cannot be a candidate (its exact copies are
    the exact pass's job)."""
    bands, rows = banding(config)
    schema = pa.schema([(ROW, pa.int64()), ("sig", pa.binary()), ("bands", pa.list_(pa.int64()))])

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            sigs, has_shingles = minhash.text_signatures(
                texts_of(batch), num_perm=config.num_perm, seed=config.seed, scheme=config.scheme,
                shingle=config.shingle, shingle_size=config.shingle_size, nfkc=config.nfkc,
                shingle_hash=config.shingle_hash)
            keys = minhash.band_hashes(sigs, bands, rows)
            band_lists = [keys[i].tolist() if has else [] for i, has in enumerate(has_shingles)]
            yield pa.RecordBatch.from_arrays(
                [batch.column(ROW), pa.array([s.tobytes() for s in sigs], pa.binary()),
                 pa.array(band_lists, pa.list_(pa.int64()))], schema=schema)

    return docs.select(ROW, "text").mapInArrow(run, "_row long, sig binary, bands array<long>")


def candidate_pairs(signed: Any, max_bucket_pairs: int) -> Any:
    """Distinct (``a``, ``b``) with ``a < b`` sharing at least one band key. Documents of
    earlier outputs (negative ``_row``) pair only with this run's: a bucket of earlier
    documents alone yields nothing."""
    from pyspark.sql import functions as F

    keyed = signed.select(ROW, F.posexplode("bands").alias("band", "key"))
    buckets = (keyed.groupBy("band", "key").agg(F.array_sort(F.collect_list(ROW)).alias("m"))
               .where((F.size("m") > 1) & (F.element_at("m", -1) >= 0)))
    small = (buckets.where(F.size("m") <= max_bucket_pairs)
             .select("m", F.explode("m").alias("a"))
             .select("a", F.explode(F.filter("m", lambda x: (x > F.col("a")) & (x >= 0))).alias("b")))
    large = (buckets.where(F.size("m") > max_bucket_pairs)
             .select(F.col("m")[0].alias("a"), F.explode(F.expr("slice(m, 2, size(m) - 1)")).alias("b"))
             .where(F.col("b") >= 0))
    return small.unionByName(large).distinct()


def similarity(pairs: Any, signed: Any, config: DedupeConfig, texts: Any | None = None) -> Any:
    """(``a``, ``b``) -> (``a``, ``b``, ``sim``, ``jaccard``): the estimated Jaccard from the
    full signatures and, when ``texts`` (``_row``, ``text``) is given, the exact Jaccard of
    the shingle sets (else null)."""
    from pyspark.sql import functions as F

    sig = signed.select(ROW, "sig")
    joined = (pairs.join(sig.withColumnsRenamed({ROW: "a", "sig": "sig_a"}), "a")
              .join(sig.withColumnsRenamed({ROW: "b", "sig": "sig_b"}), "b"))
    exact = texts is not None
    if exact:
        text = texts.select(ROW, "text")
        joined = (joined.join(text.withColumnsRenamed({ROW: "a", "text": "text_a"}), "a")
                  .join(text.withColumnsRenamed({ROW: "b", "text": "text_b"}), "b"))
    else:
        no_text = F.lit(None).cast("string")
        joined = joined.withColumns({"text_a": no_text, "text_b": no_text})
    schema = pa.schema([("a", pa.int64()), ("b", pa.int64()), ("sim", pa.float64()), ("jaccard", pa.float64())])

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            n = batch.num_rows
            sig_a = np.frombuffer(b"".join(batch.column("sig_a").to_pylist()), np.uint32).reshape(n, -1)
            sig_b = np.frombuffer(b"".join(batch.column("sig_b").to_pylist()), np.uint32).reshape(n, -1)
            jac: list[float | None] = [None] * n
            if exact:
                for i, (x, y) in enumerate(zip(texts_of(batch, "text_a"), texts_of(batch, "text_b"))):
                    sx, sy = _shingles(x, config), _shingles(y, config)
                    jac[i] = len(sx & sy) / len(sx | sy) if sx or sy else 1.0
            yield pa.RecordBatch.from_arrays(
                [batch.column("a"), batch.column("b"), pa.array(minhash.jaccard(sig_a, sig_b), pa.float64()),
                 pa.array(jac, pa.float64())], schema=schema)

    return (joined.select("a", "b", "sig_a", "sig_b", "text_a", "text_b")
            .mapInArrow(run, "a long, b long, sim double, jaccard double"))


def verified_edges(signed: Any, texts: Any, config: DedupeConfig) -> Any:
    """Candidate pairs whose similarity reaches the threshold: (``u``, ``v``). With
    ``verify_exact``: the estimate reaches ``candidate_threshold`` and the exact Jaccard of
    the shingles reaches ``threshold``."""
    from pyspark.sql import functions as F

    pairs = candidate_pairs(signed, config.max_bucket_pairs)
    scored = similarity(pairs, signed, config, texts if config.verify_exact else None)
    if config.verify_exact:
        keep = (F.col("sim") >= candidate_threshold(config)) & (F.col("jaccard") >= config.threshold)
    else:
        keep = F.col("sim") >= config.threshold
    return scored.where(keep).select(F.col("a").alias("u"), F.col("b").alias("v"))
