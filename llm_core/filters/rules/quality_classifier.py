"""GPT-3's quality classifier (Brown et al. 2020, appendix A) as a rule: reference text vs raw crawl.

``fit`` (on the driver) trains, with Spark MLlib exactly as GPT-3 did, a logistic regression
over hashed term frequencies: ``RegexTokenizer`` (lowercase, split on whitespace) ->
``HashingTF`` -> ``LogisticRegression``. Positives are the reference documents named by
``reference``; negatives are the stage's own input documents. Both classes are capped and
balanced by a deterministic sample (ordered by a seeded hash of the text), a seeded hash
split holds out ``test_fraction`` for AUC and accuracy, and the fitted ``PipelineModel`` is
saved under ``out_dir/model``.

The pass does not run Spark's model: :meth:`QualityClassifier.check_batch` scores with
``llm_core.filters.hashed_lr``, which reproduces Spark's featurisation in Python, so a score
costs a dictionary look-up per token. ``fit`` checks that these scores equal Spark's
``transform`` probabilities on held-out documents.

Keep or drop, by ``mode``:

- ``pareto`` (GPT-3): keep when ``np.random.pareto(alpha) > 1 - score``. The draw is made
  deterministic per document: a uniform ``u`` in (0, 1] from a hash of ``seed`` and the
  document id (its text when it has none), and ``pareto = u ** (-1 / alpha) - 1`` (the same
  Lomax distribution as ``np.random.pareto``). So the document is kept when
  ``u < (2 - score) ** -alpha``: always at score 1, with probability 2.6% at 0.5 (alpha 9).
- ``threshold``: keep when ``score >= threshold``.

Reference files: a Parquet file, or a folder of them (a documents folder: its ``text``
column); any other file is UTF-8 text, split at blank lines into blocks, consecutive blocks
joined until a document has ``reference_min_words`` words, so that reference documents are
about as long as web pages rather than single headings or lines.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import Field

from llm_core.errors import StageError
from llm_core.filters.hashed_lr import HashedLogisticRegression
from llm_core.filters.rule import Document, Rule, RuleConfig, Verdict

log = logging.getLogger(__name__)

NAME = "quality_classifier"
MODEL_DIR = "model"  # the Spark PipelineModel, under fit's out_dir
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")


class QualityClassifierConfig(RuleConfig):
    # Reference-quality documents (the positives): text files and/or Parquet document folders.
    reference: list[Path] = Field(default_factory=list)
    # Text files are cut at blank lines; blocks are joined until a document has this many words.
    reference_min_words: int = Field(100, ge=1)
    # HashingTF's size; Spark's default, 2**18.
    num_features: int = Field(1 << 18, ge=2)
    # Each class is capped at this many documents, then both are cut to the smaller class.
    max_docs_per_class: int = Field(20_000, ge=10)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    # L2 strength of the logistic regression (Spark's regParam, elasticNetParam 0).
    reg_param: float = Field(0.01, ge=0)
    max_iter: int = Field(100, ge=1)
    # pareto: GPT-3's sampling (keep if pareto(alpha) > 1 - score); threshold: keep if score >= threshold.
    mode: Literal["pareto", "threshold"] = "pareto"
    pareto_alpha: float = Field(9.0, gt=0)
    threshold: float = Field(0.5, ge=0, le=1)
    # Seeds the class samples, the train/test split and the per-document Pareto draws.
    seed: int = 0

    def input_files(self) -> list[Path]:
        return list(self.reference)


def pareto_keep(score: float, key: str, alpha: float, seed: int) -> bool:
    """GPT-3's ``np.random.pareto(alpha) > 1 - score``, with the draw fixed by ``seed`` and ``key``."""
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode("utf-8", "replace"), digest_size=8).digest()
    u = ((int.from_bytes(digest, "big") >> 11) + 1) / 2.0**53  # uniform on (0, 1]
    return u ** (-1.0 / alpha) - 1.0 > 1.0 - score


class QualityClassifier(Rule):
    name = NAME
    Config = QualityClassifierConfig
    signals: ClassVar = {"quality_score": pa.float32()}
    needs: ClassVar = ("reference",)

    def __init__(self, config: QualityClassifierConfig | None = None) -> None:
        super().__init__(config)
        self.model: HashedLogisticRegression | None = None  # set by fit or load_model; shipped to executors

    # -- training (driver) -------------------------------------------------------------

    def fit(self, docs: Any, out_dir: Path) -> dict[str, Any]:
        """Train on ``reference`` (positives) vs ``docs`` (negatives), save the PipelineModel
        under ``out_dir/model`` and keep the coefficients for the pass; returns the stats."""
        from pyspark.ml import Pipeline
        from pyspark.ml.classification import LogisticRegression
        from pyspark.ml.evaluation import BinaryClassificationEvaluator
        from pyspark.ml.feature import HashingTF, RegexTokenizer
        from pyspark.sql import functions as F

        c = self.config
        started = time.monotonic()
        if not c.reference:
            raise StageError(
                "filter",
                f"the {NAME} rule needs reference documents (the positives): set filter.{NAME}.reference "
                "to a list of text files or Parquet document folders, or remove it from filter.rules",
            )
        missing = [str(p) for p in c.reference if not Path(p).exists()]
        if missing:
            raise StageError("filter", f"filter.{NAME}.reference: not found: {missing}")

        spark = docs.sparkSession
        positives = self._reference_frame(spark)
        negatives = docs.select(F.col("text").cast("string").alias("text"))
        nonempty = F.col("text").isNotNull() & (F.length(F.trim(F.col("text"))) > 0)
        positives, negatives = positives.where(nonempty), negatives.where(nonempty)
        order = F.xxhash64(F.col("text"), F.lit(c.seed))
        n_pos, n_neg = positives.count(), negatives.count()
        per_class = min(n_pos, n_neg, c.max_docs_per_class)
        if per_class < 10:
            raise StageError("filter", f"{NAME}: too few documents to train on ({n_pos} reference, {n_neg} input; "
                                       "at least 10 of each are needed)")
        labelled = (
            positives.orderBy(order).limit(per_class).withColumn("label", F.lit(1.0))
            .unionByName(negatives.orderBy(order).limit(per_class).withColumn("label", F.lit(0.0)))
            .withColumn("_test", (F.abs(F.xxhash64(F.col("text"), F.lit(c.seed + 1))) % 10_000)
                        < int(round(c.test_fraction * 10_000)))
            .cache()
        )
        try:
            train, test = labelled.where(~F.col("_test")), labelled.where(F.col("_test"))
            pipeline = Pipeline(stages=[
                RegexTokenizer(inputCol="text", outputCol="tokens", pattern=r"\s+", gaps=True,
                               toLowercase=True, minTokenLength=1),
                HashingTF(inputCol="tokens", outputCol="features", numFeatures=c.num_features),
                LogisticRegression(featuresCol="features", labelCol="label", regParam=c.reg_param,
                                   elasticNetParam=0.0, maxIter=c.max_iter),
            ])
            model = pipeline.fit(train)
            model_dir = Path(out_dir) / MODEL_DIR
            model.write().overwrite().save(str(model_dir))
            self.model = HashedLogisticRegression.from_pipeline_model(model)

            scored = model.transform(test).select(
                "text", "label", "prediction", "rawPrediction",
                _positive_probability("probability"),
            ).cache()
            n_test = scored.count()
            auc = BinaryClassificationEvaluator(rawPredictionCol="rawPrediction", labelCol="label",
                                                metricName="areaUnderROC").evaluate(scored) if n_test else None
            accuracy = (scored.where(F.col("prediction") == F.col("label")).count() / n_test) if n_test else None
            sample = scored.select("text", "p").limit(200).collect()
            scored.unpersist()
            parity = max((abs(s - row["p"]) for s, row in zip(self.scores([r["text"] for r in sample]), sample)),
                         default=0.0)
            if parity > 1e-6:
                raise StageError("filter", f"{NAME}: Python scores differ from Spark's by {parity:.3g}; "
                                           "the featurisation no longer matches Spark's (JVM default locale?)")
            stats = {
                "reference_docs": n_pos, "input_docs": n_neg, "docs_per_class": per_class,
                "train_docs": per_class * 2 - n_test, "test_docs": n_test,
                "test_auc": auc, "test_accuracy": accuracy,
                "num_features": c.num_features, "nonzero_coefficients": int(self.model.indices.size),
                "parity_max_abs_diff": parity,
                "fit_seconds": round(time.monotonic() - started, 2),
            }
        finally:
            labelled.unpersist()
        (Path(out_dir) / "fit.json").write_text(json.dumps(stats, indent=2))
        log.info("%s: trained on %d docs per class, held-out AUC %s, accuracy %s", NAME, per_class, auc, accuracy)
        return stats

    def _reference_frame(self, spark: Any) -> Any:
        """The reference documents as one ``text`` column: Parquet read by Spark, text files chunked here."""
        from pyspark.sql import functions as F
        from pyspark.sql.types import StringType, StructField, StructType

        frames, texts = [], []
        for path in map(Path, self.config.reference):
            if path.suffix == ".parquet" or (path.is_dir() and any(path.rglob("*.parquet"))):
                frames.append(spark.read.parquet(str(path)).select(F.col("text").cast("string").alias("text")))
            elif path.is_dir():
                raise StageError("filter", f"filter.{NAME}.reference: {path} is a folder without Parquet files")
            else:
                texts += reference_documents(path.read_text(encoding="utf-8", errors="replace"),
                                             self.config.reference_min_words)
        schema = StructType([StructField("text", StringType())])
        if texts or not frames:
            frames.append(spark.createDataFrame([(t,) for t in texts], schema))
        frame = frames[0]
        for other in frames[1:]:
            frame = frame.unionByName(other)
        return frame

    def load_model(self, model_dir: Path) -> "QualityClassifier":
        """Take the coefficients of a PipelineModel saved by :meth:`fit` (needs a SparkSession)."""
        from pyspark.ml import PipelineModel

        self.model = HashedLogisticRegression.from_pipeline_model(PipelineModel.load(str(model_dir)))
        return self

    # -- scoring (executors) -----------------------------------------------------------

    @property
    def fitted(self) -> bool:
        return self.model is not None

    def scores(self, texts: list[str]) -> list[float]:
        """P(reference) of each text: Spark's ``PipelineModel.transform`` probability."""
        if self.model is None:
            raise RuntimeError(f"{NAME}: fit() (or load_model()) must run before documents are scored")
        return self.model.scores(texts)

    def check_batch(self, docs: list[Document]) -> list[Verdict]:
        c = self.config
        verdicts = []
        for doc, score in zip(docs, self.scores([doc.text for doc in docs])):
            if c.mode == "pareto":
                key = doc.fields.get("id") or hashlib.sha256(doc.text.encode("utf-8", "replace")).hexdigest()
                keep = pareto_keep(score, str(key), c.pareto_alpha, c.seed)
            else:
                keep = score >= c.threshold
            verdicts.append(Verdict.keep(quality_score=score) if keep
                            else Verdict.drop("quality_classifier_low_score", score, quality_score=score))
        return verdicts

    def check(self, doc: Document) -> Verdict:
        return self.check_batch([doc])[0]


def _positive_probability(column: str) -> Any:
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    return vector_to_array(F.col(column))[1].alias("p")


def reference_documents(text: str, min_words: int) -> list[str]:
    """A text file's documents: blocks between blank lines, consecutive blocks joined (with a
    blank line) until a document has ``min_words`` words; a short tail joins the last document."""
    docs: list[str] = []
    current: list[str] = []
    words = 0
    for block in _BLANK_LINE.split(text.replace("\r\n", "\n")):
        block = block.strip()
        if not block:
            continue
        current.append(block)
        words += len(block.split())
        if words >= min_words:
            docs.append("\n\n".join(current))
            current, words = [], 0
    if current:
        if docs:
            docs[-1] += "\n\n" + "\n\n".join(current)
        else:
            docs.append("\n\n".join(current))
    return docs
