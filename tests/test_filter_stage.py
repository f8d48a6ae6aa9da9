"""The whole filter stage, every rule, on a mixed-language corpus of real documents."""

import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

from llm_core.config import FilterConfig
from llm_core.documents import DOCS_DIR, DOCUMENT_SCHEMA, REJECTED_DIR, read_documents, write_documents
from llm_core.filters import MODELS_DIR, filter_documents
from llm_core.filters.runner import RULE_ERROR

PII_NOTE = (
    "Questions about the seminar programme can be sent to the organisers at seminar.office@example.org "
    "or by phone on +1 415 555 0132 during office hours.\n"
    "Travel grants are handled by Dana Smith (grants+travel@example.org), who answers within a week.\n"
    "For accessibility requests, write to access@example.org before the end of the month.\n"
    "Version 2.4.1 of the schedule was published on 2024-03-15 and costs nothing; rooms hold 120 people.\n"
)


def lingua(shared_data, lang, start, count=12):
    lines = [ln for ln in (shared_data / "langid_lingua_testdata" / "sentences" / f"{lang}.txt")
             .read_text("utf-8").splitlines() if ln.strip()][start:start + count]
    return "\n".join(" ".join(lines[i:i + 3]) for i in range(0, len(lines), 3))


@pytest.fixture(scope="module")
def corpus(shared_data):
    cc = [json.loads(line)["text"] for f in sorted((shared_data / "text_ccnet_en_head_dolma").glob("cc_en_head-*.jsonl"))
          for line in f.read_text("utf-8").splitlines()]
    novel = (shared_data / "text_sentencepiece_novels" / "wagahaiwa_nekodearu.txt").read_text("utf-8").split("\n")
    docs = {f"en{i}": text for i, text in enumerate(cc[:8])}
    docs.update({f"{lang}{i}": lingua(shared_data, lang, 12 * i) for lang in ("de", "fr", "zh", "ru") for i in range(2)})
    docs.update({f"ja{i}": "\n".join(novel[300 + 400 * i:330 + 400 * i]) for i in range(2)})
    docs["pii"] = PII_NOTE + cc[8]
    docs["repeated"] = "The best way to learn a language is to read a little of it and to speak it every day.\n" * 60
    docs["menu"] = "\n".join(["Home", "About us", "Products", "Contact", "Imprint", "Privacy policy", "Login"] * 6)
    docs["mojibake"] = cc[9].replace("'", "\u00e2\u20ac\u2122", 3)  # ’ read as cp1252
    docs["empty"] = ""
    docs["nulls"] = None
    return docs


class EveryRuleRun:
    """The corpus through every rule on local[2]: its settings, input and output folders, statistics."""

    def __init__(self, config, docs, out, stats):
        self.config, self.docs, self.out, self.stats = config, docs, out, stats


@pytest.fixture(scope="module")
def every_rule_run(corpus, shared_data, spark_config, tmp_path_factory):
    root = tmp_path_factory.mktemp("every-rule")
    rows = [{"id": key, "url": f"http://example.org/{key}", "source": "test", "text": text}
            for key, text in corpus.items()]
    write_documents(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), root / "in")
    config = FilterConfig(
        rules=[*FilterConfig().rules[:-1], "quality_classifier", "pii"],
        language={"languages": ["en", "de", "fr", "zh", "ru", "ja"]},
        quality_classifier={"reference": [shared_data / "text_wikitext2_raw_test" / "wikitext-test.txt"],
                            "mode": "threshold", "threshold": 0.0, "num_features": 1 << 14, "max_iter": 10},
    )
    stats = filter_documents(config, spark_config, root / "in", root / "out")
    return EveryRuleRun(config, root / "in", root / "out", stats)


def test_every_rule_on_a_mixed_language_corpus(every_rule_run, corpus):
    config, stats, out = every_rule_run.config, every_rule_run.stats, every_rule_run.out
    kept = {r["id"]: r for r in read_documents(out / DOCS_DIR).to_pylist()}
    rejected = {r["id"]: r for r in read_documents(out / REJECTED_DIR).to_pylist()}
    assert set(kept) | set(rejected) == set(corpus) and not set(kept) & set(rejected)
    assert all(r["reason"] != RULE_ERROR for r in rejected.values())
    for lang in ("en", "de", "fr", "zh", "ru", "ja"):
        assert any(k.startswith(lang) for k in kept), f"no {lang} document kept: {rejected}"
    assert {kept[k]["lang"] for k in kept if k[:2] in ("zh", "ja")} <= {"zh", "ja"}

    assert (rejected["repeated"]["rule"], rejected["menu"]["rule"]) == ("gopher_repetition", "gopher_quality")
    assert (rejected["empty"]["reason"], rejected["nulls"]["reason"]) == ("empty_text", "empty_text")
    assert "<EMAIL>" in kept["pii"]["text"] and "example.org" not in kept["pii"]["text"]
    assert kept["pii"]["pii_email"] == 3 and kept["pii"]["pii_phone"] == 1
    assert "Version 2.4.1" in kept["pii"]["text"] and "2024-03-15" in kept["pii"]["text"], "not PII: left alone"
    assert "\u00e2\u20ac" not in kept["mojibake"]["text"] and "\u2019" in kept["mojibake"]["text"]
    assert all(0 <= r["quality_score"] <= 1 for r in kept.values())

    fit = stats["fit"]["quality_classifier"]
    assert fit["test_auc"] > 0.8 and (out / MODELS_DIR / "quality_classifier" / "model").is_dir()
    steps = {row["rule"]: row for row in stats["funnel"]}
    assert list(steps) == config.rules
    assert steps["normalise"]["docs_in"] == len(corpus) and steps["pii"]["docs_out"] == len(kept)
    assert steps["c4"]["chars_out"] < steps["c4"]["chars_in"], "C4 removes lines"
    languages = {row["language"] for row in stats["funnel_by_language"]}
    assert {"en", "zh", "ja", "unknown"} <= languages
    assert sum(stats["dropped"].values()) == len(rejected) and stats["languages_kept"]["en"] >= 6


STANDALONE_RUN = """
import hashlib, json, os, sys
from pathlib import Path
from pyspark import SparkFiles
from llm_core.filters import filter_documents
from llm_core.filters.config import FilterConfig
from llm_core.spark import SparkConfig, get_spark
master, config, docs, out = sys.argv[1:]
spark = SparkConfig(master=master, conf={"spark.ui.enabled": "false", "spark.driver.host": "127.0.0.1",
                                         "spark.executor.memory": "1g", "spark.sql.shuffle.partitions": "2",
                                         "spark.sql.adaptive.enabled": "false"})
stats = filter_documents(FilterConfig.model_validate_json(config), spark, Path(docs), Path(out))

def loaded_model(_):
    from llm_core.filters.langid import loaded_model_path
    path = loaded_model_path()
    yield str(path), os.path.abspath(SparkFiles.getRootDirectory()), hashlib.sha256(path.read_bytes()).hexdigest()

executor = get_spark(spark).sparkContext.parallelize([0], 1).mapPartitions(loaded_model).collect()[0]
Path(out).with_suffix(".json").write_text(json.dumps({"stats": stats, "executor_model": executor,
                                                      "driver_files": SparkFiles.getRootDirectory()}))
"""


@pytest.mark.slow
def test_standalone_cluster_gives_the_local_result(every_rule_run, tmp_path, spark_standalone):
    """Every rule on a real standalone master + worker (127.0.0.1) gives the local[2] result:
    the same rows kept and rejected, every column equal (rewritten text, language and quality
    scores, reasons), and the same statistics. The quality classifier trains on the cluster;
    the executors load the language-ID model from the copy Spark shipped into their own
    folder (the driver's file), not from an installed package."""
    import hashlib
    import subprocess
    import sys

    from llm_core.filters.langid import model_path

    config = every_rule_run.config  # passed as JSON: the cluster run gets exactly these settings
    assert FilterConfig.model_validate_json(config.model_dump_json()) == config
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    out = tmp_path / "cluster"
    done = subprocess.run([sys.executable, "-c", STANDALONE_RUN, spark_standalone, config.model_dump_json(),
                           str(every_rule_run.docs), str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())

    def rows(folder):
        return sorted(read_documents(folder).to_pylist(), key=lambda r: r["id"])

    # Exactly equal, quality scores included: the classifier trains on ordered, limited samples
    # (one partition here), so Spark's sums over them do not depend on which task ends first.
    for folder in (DOCS_DIR, REJECTED_DIR):
        local, cluster = rows(every_rule_run.out / folder), rows(out / folder)
        assert [r["id"] for r in local] == [r["id"] for r in cluster], folder
        assert local == cluster, folder

    def deterministic(stats):
        return {**stats, "fit": {rule: {k: v for k, v in fit.items() if k != "fit_seconds"}
                                 for rule, fit in stats["fit"].items()}}

    assert deterministic(report["stats"]) == deterministic(json.loads(json.dumps(every_rule_run.stats)))

    path, files_dir, digest = report["executor_model"]
    assert Path(path) == Path(files_dir) / model_path().name and Path(path) != model_path()
    assert Path(files_dir) != Path(report["driver_files"]), "an executor's own folder, not the driver's"
    assert digest == hashlib.sha256(model_path().read_bytes()).hexdigest()
