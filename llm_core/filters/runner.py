"""Apply an ordered list of rules to documents: one Arrow batch at a time, in one Spark pass.

:func:`apply_rules` is the whole runner for one batch (plain pyarrow, testable without
Spark): the rules run in order, a dropped document is not shown to the rules after the one
that dropped it (as in datatrove), rewritten text is passed on, and the batch comes back
with every rule's signal columns, ``reason`` / ``rule`` / ``reason_value`` (null when kept)
and a ``_trace`` of the document's length in characters before the first rule and after
each rule it passed. :func:`annotate` runs it inside one ``mapInArrow`` over a Spark
DataFrame; :func:`funnel` turns the traces into documents and characters in and out per
rule, per language.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator, Sequence

import pyarrow as pa

from llm_core.documents import REASON, REASON_VALUE, RULE
from llm_core.filters.rule import Document, Rule, Verdict

log = logging.getLogger(__name__)

TRACE = "_trace"
RULE_ERROR = "rule_error"  # a rule raised on this document: rejected, never silently kept
UNKNOWN_LANGUAGE = "unknown"

VERDICT_COLUMNS = {REASON: pa.string(), RULE: pa.string(), REASON_VALUE: pa.float64(), TRACE: pa.list_(pa.int64())}


def output_schema(input_schema: pa.Schema, rules: Sequence[Rule]) -> pa.Schema:
    """The input's columns (a signal that already exists, like ``lang``, keeps its place and
    type), then each rule's new signal columns in rule order, then the verdict columns."""
    fields = {f.name: f for f in input_schema}
    for rule in rules:
        for name, typ in rule.signals.items():
            fields.setdefault(name, pa.field(name, typ))
    for name, typ in VERDICT_COLUMNS.items():
        fields[name] = pa.field(name, typ)
    return pa.schema(list(fields.values()))


def texts_of(column: pa.Array) -> list[str]:
    """The texts of a column as Python strings: null is empty, invalid UTF-8 is replaced (U+FFFD)."""
    try:
        values = column.to_pylist()
    except UnicodeDecodeError:
        values = [None if b is None else b.decode("utf-8", "replace") for b in column.cast(pa.binary()).to_pylist()]
    return [v or "" for v in values]


def _checked(rule: Rule, docs: list[Document]) -> list[Verdict]:
    """The rule's verdicts; a document it fails on is rejected with ``rule_error`` (and logged)."""
    try:
        return rule.check_batch(docs)
    except Exception:  # find the document(s) it fails on, keep the verdicts of the others
        verdicts = []
        for doc in docs:
            try:
                verdicts.append(rule.check(doc))
            except Exception:
                log.exception("filter rule %s failed on a document (%d chars); rejecting it", rule.name, len(doc.text))
                verdicts.append(Verdict.drop(RULE_ERROR))
        return verdicts


def apply_rules(rules: Sequence[Rule], batch: pa.RecordBatch) -> pa.RecordBatch:
    texts = texts_of(batch.column("text"))
    others = batch.drop_columns(["text"]).to_pylist() if batch.num_columns > 1 else [{} for _ in texts]
    docs = [Document(text, fields) for text, fields in zip(texts, others)]
    signals: dict[str, list[Any]] = {name: [None] * len(docs) for rule in rules for name in rule.signals}
    reasons: list[str | None] = [None] * len(docs)
    dropped_by: list[str | None] = [None] * len(docs)
    values: list[float | None] = [None] * len(docs)
    traces = [[len(doc.text)] for doc in docs]

    active = list(range(len(docs)))
    for rule in rules:
        if not active:
            break
        verdicts = _checked(rule, [docs[i] for i in active])
        still_active = []
        for i, verdict in zip(active, verdicts):
            for name, value in verdict.signals.items():
                signals[name][i] = value
                docs[i].fields[name] = value
            if verdict.reason is not None:
                reasons[i], dropped_by[i], values[i] = verdict.reason, rule.name, verdict.value
                continue
            if verdict.text is not None:
                docs[i].text = verdict.text
            traces[i].append(len(docs[i].text))
            still_active.append(i)
        active = still_active

    schema = output_schema(batch.schema, rules)
    columns = {name: batch.column(name) for name in batch.schema.names}
    columns["text"] = pa.array([doc.text for doc in docs], pa.string())
    for name, values_ in signals.items():
        columns[name] = pa.array(values_, schema.field(name).type)
    columns[REASON] = pa.array(reasons, pa.string())
    columns[RULE] = pa.array(dropped_by, pa.string())
    columns[REASON_VALUE] = pa.array(values, pa.float64())
    columns[TRACE] = pa.array(traces, pa.list_(pa.int64()))
    return pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema)


def annotate(docs: Any, rules: Sequence[Rule]) -> Any:
    """The Spark DataFrame ``docs`` with every rule applied, in one ``mapInArrow`` pass."""
    from pyspark.sql.pandas.types import from_arrow_type, to_arrow_schema
    from pyspark.sql.types import StructField, StructType

    existing = {f.name: f for f in docs.schema.fields}
    schema = output_schema(to_arrow_schema(docs.schema, timezone="UTC"), rules)
    spark_schema = StructType([existing.get(f.name) or StructField(f.name, from_arrow_type(f.type)) for f in schema])
    rules = list(rules)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield apply_rules(rules, batch)

    return docs.mapInArrow(run, spark_schema)


def funnel(annotated: Any, rules: Sequence[Rule]) -> dict[str, list[dict[str, Any]]]:
    """Documents and characters into and out of each rule, overall (``"all"``) and per language.

    A document enters rule ``i`` when its trace has more than ``i`` entries and leaves it when
    it has more than ``i + 1``; the trace holds its length at each of those points."""
    from pyspark.sql import functions as F

    trace, size = F.col(TRACE), F.size(F.col(TRACE))
    aggregates = []
    for i in range(len(rules) + 1):
        aggregates += [
            F.sum(F.when(size > i, 1).otherwise(0)).alias(f"d{i}"),
            F.sum(F.when(size > i, trace[i]).otherwise(0)).alias(f"c{i}"),
        ]
    language = F.coalesce(F.col("lang"), F.lit(UNKNOWN_LANGUAGE)).alias("language")
    rows = annotated.groupBy(language).agg(*aggregates).collect()
    by_language = {row["language"]: row.asDict() for row in rows}
    totals = {f"{k}{i}": sum(r[f"{k}{i}"] or 0 for r in by_language.values())
              for k in "dc" for i in range(len(rules) + 1)}

    def steps(counts: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"rule": rule.name, "docs_in": int(counts[f"d{i}"] or 0), "docs_out": int(counts[f"d{i + 1}"] or 0),
             "chars_in": int(counts[f"c{i}"] or 0), "chars_out": int(counts[f"c{i + 1}"] or 0)}
            for i, rule in enumerate(rules)
        ]

    return {"all": steps(totals), **{lang: steps(counts) for lang, counts in sorted(by_language.items())}}
