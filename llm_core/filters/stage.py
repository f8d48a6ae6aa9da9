"""The filter stage as one Spark job.

Each partition runs fastText language ID and the quality rules over Arrow batches
(``mapInArrow``: no per-row Python/JVM round trip), adding the signals as columns and a
``reason`` (null when kept). Kept documents go to ``docs/``, the others to ``rejected/``
with their reason, and the per-reason counts to ``stats.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

from llm_core.filters.config import FilterConfig
from llm_core.documents import DOCS_DIR, REJECTED_DIR
from llm_core.errors import StageError
from llm_core.filters.langid import detect_language
from llm_core.filters.quality import language_reason, quality_reason, quality_signals
from llm_core.spark import SparkConfig, get_spark

STAGE = "filter"
log = logging.getLogger(__name__)

SIGNAL_COLUMNS = {
    "lang": pa.string(),
    "lang_score": pa.float32(),
    "quality_words": pa.int32(),
    "quality_non_alpha_words_ratio": pa.float32(),
    "quality_mean_word_length": pa.float32(),
    "reason": pa.string(),
}


def annotate_batch(batch: pa.RecordBatch, config: FilterConfig) -> pa.RecordBatch:
    """Add language, quality signals and the drop reason to one batch of documents."""
    columns = {name: [] for name in SIGNAL_COLUMNS}
    for text in batch.column("text").to_pylist():
        text = text or ""
        lang, score = detect_language(text)
        signals = quality_signals(text)
        columns["lang"].append(lang)
        columns["lang_score"].append(score)
        columns["quality_words"].append(signals.words)
        columns["quality_non_alpha_words_ratio"].append(signals.non_alpha_words_ratio)
        columns["quality_mean_word_length"].append(signals.mean_word_length)
        columns["reason"].append(language_reason(lang, score, config) or quality_reason(signals, config))
    names = [n for n in batch.schema.names if n not in SIGNAL_COLUMNS]
    arrays = [batch.column(n) for n in names]
    for name, typ in SIGNAL_COLUMNS.items():
        names.append(name)
        arrays.append(pa.array(columns[name], typ))
    return pa.RecordBatch.from_arrays(arrays, names=names)


def filter_documents(config: FilterConfig, spark_config: SparkConfig, docs_dir: Path, out_dir: Path) -> dict[str, Any]:
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_type
    from pyspark.sql.types import StructField, StructType

    spark = get_spark(spark_config)
    docs = spark.read.parquet(str(docs_dir))
    docs_in = docs.count()
    if docs_in == 0:
        raise StageError(STAGE, f"no input documents in {docs_dir}")

    out_schema = StructType(
        [f for f in docs.schema.fields if f.name not in SIGNAL_COLUMNS]
        + [StructField(name, from_arrow_type(typ)) for name, typ in SIGNAL_COLUMNS.items()]
    )

    def annotate(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield annotate_batch(batch, config)

    annotated = docs.mapInArrow(annotate, out_schema).persist()
    try:
        counts = {row["reason"]: row["count"] for row in annotated.groupBy("reason").count().collect()}
        docs_out = counts.pop(None, 0)
        if docs_out == 0:
            raise StageError(
                STAGE,
                f"all {docs_in} documents were filtered out (by reason: {counts}); "
                "loosen the filter settings (filter.languages, filter.min_words, ...) or crawl more pages",
            )
        annotated.where(F.col("reason").isNull()).drop("reason").write.parquet(str(out_dir / DOCS_DIR))
        annotated.where(F.col("reason").isNotNull()).write.parquet(str(out_dir / REJECTED_DIR))
        languages = {
            row["lang"]: row["count"]
            for row in annotated.where(F.col("reason").isNull()).groupBy("lang").count().collect()
        }
    finally:
        annotated.unpersist()
    log.info("filter: %d in, %d kept, dropped %s", docs_in, docs_out, counts)
    return {"docs_in": docs_in, "docs_out": docs_out, "dropped": counts, "languages_kept": languages}

