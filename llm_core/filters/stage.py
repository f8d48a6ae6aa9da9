"""The filter stage: the configured rules over every document in one Spark pass, every drop audited.

Rules that learn from the corpus fit first, on the driver (their models are kept under
``models/<rule>/`` and reach the executors inside the pickled rules); the files rules read
(the language-ID model) are shipped with the job; then one ``mapInArrow`` pass applies every
rule in order (``llm_core.filters.runner``). Kept documents go to ``docs/``, the others to
``rejected/`` with ``reason``, ``rule`` and ``reason_value`` (``llm_core.documents.write_split``),
and ``stats.json`` gets the per-reason counts and the funnel: documents and characters into
and out of each rule, overall and per language.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from llm_core.documents import write_split
from llm_core.errors import StageError
from llm_core.filters.config import FilterConfig
from llm_core.filters.runner import TRACE, annotate, funnel
from llm_core.spark import SparkConfig, get_spark

STAGE = "filter"
MODELS_DIR = "models"
FUNNEL_TABLES = ("funnel", "funnel_by_language")
log = logging.getLogger(__name__)


def filter_documents(config: FilterConfig, spark_config: SparkConfig, docs_dir: Path, out_dir: Path) -> dict[str, Any]:
    spark = get_spark(spark_config)
    docs = spark.read.parquet(str(docs_dir))
    if docs.isEmpty():
        raise StageError(STAGE, f"no input documents in {docs_dir}")

    rules = config.build_rules()
    ship_files(spark, [path for rule in rules for path in rule.files()])
    fitted = {}
    for rule in rules:
        fit_stats = rule.fit(docs, out_dir / MODELS_DIR / rule.name)
        if fit_stats:
            fitted[rule.name] = fit_stats

    annotated = annotate(docs, rules).persist()
    try:
        split = write_split(annotated, out_dir, STAGE, drop_columns=(TRACE,), hint=(
            "loosen the rules' settings (filter.language.languages, filter.gopher_quality.min_words, ...), "
            "drop rules from filter.rules or crawl more pages"))
        steps = funnel(annotated, rules)
    finally:
        annotated.unpersist()

    overall = steps.pop("all")
    languages_kept = {lang: rows[-1]["docs_out"] for lang, rows in steps.items() if rows and rows[-1]["docs_out"]}
    log.info("filter: %d in, %d kept, dropped %s", split["docs_in"], split["docs_out"], split["dropped"])
    return {
        **split,
        "rules": [rule.name for rule in rules],
        "fit": fitted,
        "languages_kept": languages_kept,
        "funnel": overall,
        "funnel_by_language": [{"language": lang, **row} for lang, rows in steps.items() for row in rows],
    }


def ship_files(spark: Any, paths: list[Path]) -> None:
    """Send each file to every executor with this session's jobs (``SparkContext.addFile``),
    where the rule's loader finds it by name (``llm_core.filters.rule.shipped_file``): on a
    cluster, executors run in their own folders on other machines. A name the session already
    ships is left as it is (Spark refuses to replace an added file, and warns)."""
    context = spark.sparkContext
    shipped = {uri.rstrip("/").rsplit("/", 1)[-1] for uri in context.listFiles}
    for path in paths:
        if path.name not in shipped:
            context.addFile(str(path))
            shipped.add(path.name)
