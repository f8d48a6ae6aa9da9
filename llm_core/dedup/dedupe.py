"""The dedupe stage: URL, exact and near duplicates removed as Spark DataFrame jobs.

Three passes, each over the documents the previous ones kept:

1. ``url_duplicate`` (rule ``url_dedupe``): the same URL once normalised (scheme,
   fragment, host case, default port and trailing slash ignored): a page fetched twice.
2. ``exact_duplicate`` (``exact_dedupe``): the same normal form of the text (case,
   punctuation and whitespace folded; see ``shingles.normalise``), by its SHA-256.
3. ``near_duplicate`` (``near_dedupe``): MinHash-LSH candidates verified on their full
   signatures and the exact Jaccard of their shingles (``near.py``), grouped into
   clusters by connected components (``components.py``).

Each group keeps one document by ``keep`` (longest text, earliest fetch, smallest id or
input order; the others break ties in that order, so the choice is deterministic). Every
other member goes to ``rejected/`` with ``reason``, ``rule``, ``dup_of`` (the id of the
kept document), ``dup_cluster`` (the group's id: the smallest document id of the last
group its keeper was judged in) and, for near duplicates, ``reason_value`` = the Jaccard
similarity to the kept document (exact with ``verify_exact``, else estimated). A document
kept by one pass and rejected by a later one hands its copies on: ``dup_of`` always names
a kept document (or one of an earlier output) and a group has one ``dup_cluster``. Kept
documents carry ``dup_cluster`` too (their group's id, or their own id when they duplicate
nothing), so a cluster reads from either side. The split is written by
``llm_core.documents.write_split``, as the filter writes it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from llm_core.dedup import near
from llm_core.dedup.components import connected_components
from llm_core.dedup.config import DedupeConfig
from llm_core.dedup.index import read_earlier, write_index
from llm_core.documents import REASON, REASON_VALUE, RULE, write_split
from llm_core.errors import StageError
from llm_core.spark import SparkConfig, get_spark

STAGE = "dedupe"
ROW = near.ROW
EXACT_RULE, NEAR_RULE, URL_RULE = "exact_dedupe", "near_dedupe", "url_dedupe"
log = logging.getLogger(__name__)


def _order(keep: str) -> list[Any]:
    """Sort order within a group: the first row is kept. Documents of an earlier output
    (negative ``_row``) come first: what was accepted before stays accepted."""
    from pyspark.sql import functions as F

    earlier = (F.col(ROW) < 0).desc()
    longest = F.length("text").desc_nulls_last()
    fetched = F.col("fetched_at").asc_nulls_last()
    smallest = F.col("id").asc_nulls_last()
    first = F.col(ROW).asc()
    return [earlier, *{"longest": [longest, fetched, smallest, first], "earliest": [fetched, longest, smallest, first],
                       "smallest_id": [smallest, first], "first": [first]}[keep]]


def url_key(url: Any) -> Any:
    """A Spark expression: the URL without fragment, scheme, default port or trailing
    slash, host lower-cased (null stays null: no URL, no URL duplicate)."""
    from pyspark.sql import functions as F

    no_fragment = F.regexp_replace(url, "#.*$", "")
    host = F.lower(F.regexp_extract(no_fragment, r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)", 1))
    rest = F.regexp_extract(no_fragment, r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*(.*)$", 1)
    host = F.regexp_replace(host, r":(80|443)$", "")
    rest = F.regexp_replace(rest, r"/+(\?|$)", "$1")
    return F.when(host != "", F.concat(host, rest)).otherwise(no_fragment)


def _pick(members: Any, group: str, pool: Any, keep: str) -> tuple[Any, Any]:
    """``members`` (``_row``, ``group``) with groups of two or more -> (winners, losers):
    winners (``_row``, ``dup_cluster``), losers (``_row``, ``dup_of``, ``dup_cluster``,
    ``kept_row``). ``pool``: (``_row``, ``id``, ``text``, ``fetched_at``) of every member."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ranked = members.join(pool, ROW)
    by_group = Window.partitionBy(group)
    ranked = (ranked.withColumn("_pos", F.row_number().over(by_group.orderBy(*_order(keep))))
              .withColumn("dup_cluster", F.min("id").over(by_group)))
    winners = ranked.where(F.col("_pos") == 1).select(group, ROW, "dup_cluster", F.col("id").alias("dup_of"),
                                                      F.col(ROW).alias("kept_row"))
    losers = (ranked.where(F.col("_pos") > 1).select(group, ROW)
              .join(winners.select(group, "dup_of", "dup_cluster", "kept_row"), group))
    return winners.select(ROW, "dup_cluster"), losers.select(ROW, "dup_of", "dup_cluster", "kept_row")


def _key_pass(live: Any, column: str, earlier: Any | None, pool: Any, keep: str) -> tuple[Any, Any]:
    """Groups of documents with the same non-null ``column`` among the live ones and the
    earlier outputs' (only groups with at least one live document)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keyed = live.select(ROW, F.col(column).alias("_key"))
    if earlier is not None:
        keyed = keyed.unionByName(earlier.select(ROW, F.col(column).alias("_key")))
    by_key = Window.partitionBy("_key")
    keyed = (keyed.where(F.col("_key").isNotNull())
             .withColumn("_n", F.count("*").over(by_key)).withColumn("_last", F.max(ROW).over(by_key))
             .where((F.col("_n") > 1) & (F.col("_last") >= 0)))
    return _pick(keyed.select(ROW, "_key"), "_key", pool, keep)


def _verdict(losers: Any, reason: str, rule: str, value: Any = None) -> Any:
    """Rejected rows of a pass; a document that repeats one of an earlier output gets
    ``earlier_<reason>``."""
    from pyspark.sql import functions as F

    value = F.lit(None).cast("double") if value is None else value
    why = F.when(F.col("kept_row") < 0, F.lit(f"earlier_{reason}")).otherwise(F.lit(reason))
    return losers.select(ROW, "dup_of", "dup_cluster", why.alias(REASON), F.lit(rule).alias(RULE),
                         value.alias(REASON_VALUE), "kept_row")


def _size_bucket(size: int) -> str:
    """Cluster sizes in powers of two: 2, 3-4, 5-8, ..."""
    hi = 2
    while hi < size:
        hi *= 2
    return "2" if hi == 2 else f"{hi // 2 + 1}-{hi}"


def _cluster_sizes(clusters: Any) -> list[dict[str, Any]]:
    """Near-duplicate clusters counted by size bucket (a table: one row per bucket)."""
    histogram: dict[str, int] = {}
    for size, count in sorted(clusters.groupBy("component").count().groupBy("count").count().collect()):
        bucket = _size_bucket(size)
        histogram[bucket] = histogram.get(bucket, 0) + count
    return [{"size": size, "clusters": count} for size, count in histogram.items()]


def dedupe(config: DedupeConfig, spark_config: SparkConfig, docs_dir: Path, out_dir: Path) -> dict[str, Any]:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    if not any(Path(docs_dir).glob("*.parquet")):
        raise StageError(STAGE, f"no input documents in {docs_dir}")
    spark = get_spark(spark_config)
    bands, rows = near.banding(config)
    earlier = read_earlier(spark, config, bands, rows)
    # Columns this stage writes are dropped if the input has them (deduplicating an output again).
    docs = (spark.read.parquet(str(docs_dir)).drop("dup_cluster", "dup_of", REASON, RULE, REASON_VALUE)
            .withColumn(ROW, F.monotonically_increasing_id())
            .persist(StorageLevel.MEMORY_AND_DISK))
    if docs.count() == 0:
        docs.unpersist()
        raise StageError(STAGE, f"no input documents in {docs_dir}")
    # Each document's URL key and text hash, once: the passes and the index read them.
    keys = (near.text_hashes(docs, config).join(docs.select(ROW, url_key(F.col("url")).alias("url_key")), ROW)
            .persist(StorageLevel.MEMORY_AND_DISK))
    # Who can be kept: this run's documents and the earlier outputs' (which always win).
    pool = docs.select(ROW, "id", "text", "fetched_at")
    if earlier is not None:
        earlier = earlier.persist(StorageLevel.MEMORY_AND_DISK)
        pool = pool.unionByName(earlier.select(ROW, "id", "text", "fetched_at"))
    to_release = [docs, keys] + ([earlier] if earlier is not None else [])
    verdicts, winners, passes = [], [], []
    live = keys
    signed = None
    stats: dict[str, Any] = {}

    def record(name: str, won: Any, lost: Any) -> None:
        # Each pass's verdicts are materialised once: the next pass, the final join and the
        # statistics read them, and recomputing a pass's whole plan each time costs more
        # than keeping its (small) result.
        nonlocal live
        lost = lost.localCheckpoint()
        winners.append(won.withColumn("_step", F.lit(len(passes))).localCheckpoint())
        verdicts.append(lost)
        passes.append(name)
        live = live.join(lost.select(ROW), ROW, "left_anti")

    if config.url:
        won, lost = _key_pass(live, "url_key", earlier, pool, config.keep)
        record("url", won, _verdict(lost, "url_duplicate", URL_RULE))
    if config.exact:
        won, lost = _key_pass(live, "hash", earlier, pool, config.keep)
        record("exact", won, _verdict(lost, "exact_duplicate", EXACT_RULE))
    if config.near:
        signed = near.sign(docs.join(live.select(ROW), ROW), config).persist(StorageLevel.MEMORY_AND_DISK)
        to_release.append(signed)
        every = signed if earlier is None else signed.unionByName(earlier.select(ROW, "sig", "bands"))
        edges = near.verified_edges(every, pool, config)
        clusters = connected_components(edges, config.max_component_rounds).persist(StorageLevel.MEMORY_AND_DISK)
        to_release.append(clusters)
        won, lost = _pick(clusters.select(F.col("node").alias(ROW), "component"), "component", pool, config.keep)
        lost = lost.persist(StorageLevel.MEMORY_AND_DISK)
        to_release.append(lost)
        # The audit's value: the similarity to the kept document, exact when verified exactly.
        sims = near.similarity(lost.select(F.col(ROW).alias("a"), F.col("kept_row").alias("b")), every, config,
                               pool if config.verify_exact else None)
        lost = lost.join(sims.select(F.col("a").alias(ROW), F.coalesce("jaccard", "sim").alias("sim")), ROW)
        record("near", won, _verdict(lost, "near_duplicate", NEAR_RULE, F.col("sim")))
        # Clusters of this run: those made only of earlier documents do not occur (no pairs).
        stats["cluster_sizes"] = _cluster_sizes(clusters)
        stats["near_clusters"] = sum(row["clusters"] for row in stats["cluster_sizes"])

    judged = _judged(docs, verdicts, winners).persist(StorageLevel.MEMORY_AND_DISK)
    to_release.append(judged)
    try:
        hint = ("every document repeats one accepted by the outputs in dedupe.against: nothing new to add"
                if config.against else "every document was a duplicate of another: this cannot happen, please report it")
        split = write_split(judged, out_dir, STAGE, drop_columns=(ROW,), hint=hint)
        kept = judged.where(F.col(REASON).isNull()).select(ROW, "id").join(keys.select(ROW, "url_key", "hash"), ROW)
        if signed is not None:
            kept = kept.join(signed, ROW, "left")
        else:
            kept = kept.withColumns({"sig": F.lit(None).cast("binary"), "bands": F.lit(None).cast("array<long>")})
        write_index(kept.orderBy(ROW).select("id", "url_key", "hash", "sig", "bands"), out_dir, config, bands, rows)
    finally:
        for frame in reversed(to_release):
            frame.unpersist()
    dropped = split["dropped"]
    funnel = _funnel(passes, split["docs_in"], dropped)
    stats = {**split, **{f"{kind}_duplicates": dropped.get(f"{kind}_duplicate", 0) for kind in ("url", "exact", "near")},
             "earlier_duplicates": sum(p["earlier_duplicates"] for p in funnel), "passes": funnel,
             "bands": bands, "rows": rows, **stats}
    log.info("dedupe: %d in, %d kept, dropped %s", split["docs_in"], split["docs_out"], dropped)
    return stats


def _funnel(passes: list[str], docs_in: int, dropped: dict[str, int]) -> list[dict[str, Any]]:
    """Documents into and out of each pass (a table), from the counts per reason: each pass
    has its own reasons (``url_duplicate``, ``earlier_url_duplicate``...)."""
    rows, remaining = [], docs_in
    for name in passes:
        within, before = dropped.get(f"{name}_duplicate", 0), dropped.get(f"earlier_{name}_duplicate", 0)
        rows.append({"pass": name, "docs_in": remaining, "duplicates": within, "earlier_duplicates": before,
                     "docs_out": remaining - within - before})
        remaining -= within + before
    return rows


def _judged(docs: Any, verdicts: list[Any], winners: list[Any]) -> Any:
    """Every input document with its verdict columns, in input order."""
    from pyspark.sql import functions as F

    if verdicts:
        lost_all = verdicts[0]
        for more in verdicts[1:]:
            lost_all = lost_all.unionByName(more)
        # The keeper of one pass can lose a later one (the kept copy of an exact group is a
        # near duplicate of a longer page): its losers follow it to the final keeper, so
        # ``dup_of`` always names a kept document and a group has one ``dup_cluster``.
        for _ in verdicts[1:]:
            then = lost_all.select(F.col(ROW).alias("kept_row"), F.col("dup_of").alias("_of"),
                                   F.col("dup_cluster").alias("_cluster"), F.col("kept_row").alias("_kept"))
            lost_all = (lost_all.join(then, "kept_row", "left")
                        .select(ROW, F.coalesce("_of", "dup_of").alias("dup_of"),
                                F.coalesce("_cluster", "dup_cluster").alias("dup_cluster"), REASON, RULE, REASON_VALUE,
                                F.coalesce("_kept", "kept_row").alias("kept_row")))
        won_all = winners[0]
        for more in winners[1:]:
            won_all = won_all.unionByName(more)
        # A document that won several passes names the cluster of the last one, and so do
        # the copies it kept out in earlier passes.
        won_all = won_all.groupBy(ROW).agg(F.max_by("dup_cluster", "_step").alias("won_cluster"))
        final = won_all.select(F.col(ROW).alias("kept_row"), F.col("won_cluster").alias("_final"))
        lost_all = (lost_all.join(final, "kept_row", "left")
                    .withColumn("dup_cluster", F.coalesce("_final", "dup_cluster")).drop("_final"))
        judged = (docs.join(lost_all, ROW, "left").join(won_all, ROW, "left")
                  .withColumn("dup_cluster", F.coalesce("dup_cluster", "won_cluster", "id")).drop("won_cluster"))
    else:
        judged = (docs.withColumn("dup_of", F.lit(None).cast("string")).withColumn("dup_cluster", F.col("id"))
                  .withColumn(REASON, F.lit(None).cast("string")).withColumn(RULE, F.lit(None).cast("string"))
                  .withColumn(REASON_VALUE, F.lit(None).cast("double")))
    columns = [c for c in docs.columns if c != ROW]
    return judged.orderBy(ROW).select(*columns, "dup_cluster", "dup_of", REASON, RULE, REASON_VALUE, ROW)
