"""The GPT-3 quality classifier rule on real data: Wikipedia and inaugural addresses as the
reference, whole-page text of real web pages (boilerplate and all) as the crawl.

One fit for the module (Spark MLlib), then: held-out quality, unseen reference-like text
scoring above unseen boilerplate pages, Python scores equal to Spark's ``transform`` on the
reloaded model, and deterministic Pareto sampling through the real Spark pass."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from llm_core.documents import DOCUMENT_SCHEMA, write_documents
from llm_core.errors import StageError
from llm_core.filters.rule import Document
from llm_core.filters.rules.quality_classifier import (
    MODEL_DIR,
    QualityClassifier,
    QualityClassifierConfig,
    pareto_keep,
    reference_documents,
)
from llm_core.filters.hashed_lr import spark_term_index

# Small but real: the defaults (2**18 features, 100 iterations) only make the test slower.
FAST = {"num_features": 1 << 16, "max_iter": 20}


def page_text(path: Path) -> str:
    """A page's whole text, boilerplate included (what a naive crawl keeps), without scripts/styles."""
    import lxml.html

    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    root = lxml.html.fromstring(data)
    for node in root.xpath("//script|//style"):
        node.drop_tree()
    return root.text_content()


def zip_texts(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as z:
        return [z.read(n).decode("latin-1") for n in sorted(z.namelist()) if n.endswith(".txt")]


def write_docs(directory: Path, texts: list[str], prefix: str) -> Path:
    rows = [{"id": f"{prefix}{i}", "url": f"http://x/{prefix}{i}", "source": "test", "text": t}
            for i, t in enumerate(texts)]
    write_documents(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), directory)
    return directory


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory):
    from llm_core.filters.langid import detect_language

    root = tmp_path_factory.mktemp("classifier")
    pages = sorted((shared_data / "html_trafilatura" / "cache").glob("*.html"))
    pages += sorted((shared_data / "html_scrapinghub_aeb" / "html").glob("*.html.gz"))
    texts = [page_text(p) for p in pages]
    crawl = [t for i, t in enumerate(texts) if i % 4]  # the stage's input: the negatives
    unseen = [t for i, t in enumerate(texts) if i % 4 == 0]
    unseen_english = [t for t in unseen if detect_language(" ".join(t.split()))[0] == "en"]
    # Positives: WikiText (a text file) and the inaugural addresses (a Parquet documents folder).
    inaugural = write_docs(root / "inaugural", zip_texts(shared_data / "nltk_data_corpora" / "inaugural.zip"), "inaug")
    reference = [shared_data / "text_wikitext2_raw_test" / "wikitext-test.txt", inaugural]
    # Reference-like text never trained on: State of the Union addresses (a paragraph a line), cut
    # like a reference file into documents of reference length: raw term counts make scores
    # length-sensitive, and a whole 9,000-word speech is far longer than any training reference.
    addresses = "\n\n".join(zip_texts(shared_data / "nltk_data_corpora" / "state_union.zip"))
    speeches = reference_documents(addresses.replace("\n", "\n\n"), 150)
    return {
        "input": write_docs(root / "input", crawl, "page"), "reference": reference, "root": root,
        "unseen_pages": unseen, "unseen_english_pages": unseen_english, "speeches": speeches[::4],
    }


@pytest.fixture(scope="module")
def spark(spark_config):
    from llm_core.spark import get_spark

    return get_spark(spark_config)


@pytest.fixture(scope="module")
def fitted(corpus, spark):
    rule = QualityClassifier(QualityClassifierConfig(reference=corpus["reference"], **FAST))
    out_dir = corpus["root"] / "fit"
    stats = rule.fit(spark.read.parquet(str(corpus["input"])), out_dir)
    return rule, stats, out_dir


def test_fit_reports_held_out_quality_and_saves_the_model(fitted, corpus):
    rule, stats, out_dir = fitted
    assert stats["docs_per_class"] == stats["input_docs"]  # capped to the smaller class (the crawl)
    assert stats["reference_docs"] > stats["input_docs"]
    assert stats["test_docs"] > 30
    assert stats["test_auc"] > 0.9, stats  # 0.97 measured
    assert stats["test_accuracy"] > 0.75, stats
    assert stats["parity_max_abs_diff"] < 1e-6
    assert (out_dir / MODEL_DIR / "metadata").is_dir() and (out_dir / "fit.json").is_file()
    assert rule.config.input_files() == corpus["reference"]


def test_reference_like_text_scores_above_boilerplate_pages(fitted, corpus):
    rule, _, _ = fitted
    speeches = np.array(rule.scores(corpus["speeches"]))
    pages = np.array(rule.scores(corpus["unseen_english_pages"]))
    assert len(speeches) >= 20 and len(pages) >= 20
    # Unseen on both sides and all English: the ranking is not language ID.
    auc = (speeches[:, None] > pages[None, :]).mean()
    assert auc > 0.9, (auc, np.median(speeches), np.median(pages))
    assert np.median(speeches) > np.median(pages)


def test_python_scores_equal_spark_transform_of_the_reloaded_model(fitted, corpus, spark, shared_data):
    from pyspark.ml import PipelineModel
    from pyspark.ml.functions import vector_to_array

    rule, _, out_dir = fitted
    novel = (shared_data / "text_sentencepiece_novels" / "wagahaiwa_nekodearu.txt").read_text()
    tricky = [
        "", "   ", "ΣΊΣΥΦΟΣ ΟΔΥΣΣΕΎΣ İstanbul ǅemal Straße",  # Java and Python lowercase alike
        "no-break\u00a0space\u2003em\x1cfile\x1dsep\x85nel\ttab\x0bvt\fff\r\ncrlf",  # only Java's \s splits
        "emoji 😀🚀 and combining é and a lone surrogate \ud800 here",
        novel[:4000], novel[50_000:52_000],
    ]
    texts = corpus["unseen_pages"] + corpus["speeches"] + tricky
    model = PipelineModel.load(str(out_dir / MODEL_DIR))
    frame = spark.createDataFrame([(i, t.encode("utf-8", "replace").decode()) for i, t in enumerate(texts)],
                                  "i int, text string")
    rows = model.transform(frame).select("i", vector_to_array("probability")[1].alias("p")).collect()
    spark_scores = np.array([p for _, p in sorted((r["i"], r["p"]) for r in rows)])

    reloaded = QualityClassifier(QualityClassifierConfig(reference=corpus["reference"])).load_model(out_dir / MODEL_DIR)
    ours = np.array(reloaded.scores(texts))
    assert np.abs(ours - spark_scores).max() < 1e-6
    assert np.array_equal(ours, np.array(rule.scores(texts)))
    assert spark_scores.std() > 0.1  # real, varied scores, not all 0 or 1


def test_hashing_matches_spark_hashing_tf(spark):
    from pyspark.ml.feature import HashingTF

    hashing = HashingTF(numFeatures=1 << 18)
    # Every UTF-8 tail length (0-3 bytes past a 4-byte block), multi-byte characters, emoji.
    terms = ["", "a", "ab", "abc", "abcd", "abcde", "straße", "日本語", "😀", "<div>", "'s", "1,000"]
    assert [spark_term_index(t, 1 << 18) for t in terms] == [hashing.indexOf(t) for t in terms]


def test_pareto_sampling_is_deterministic_in_the_spark_pass(fitted, corpus, spark):
    from llm_core.filters.runner import annotate

    rule, _, _ = fitted
    docs = spark.read.parquet(str(corpus["input"]))

    def run(seed):
        pareto = QualityClassifier(rule.config.model_copy(update={"mode": "pareto", "seed": seed}))
        pareto.model = rule.model
        rows = annotate(docs, [pareto]).select("id", "text", "quality_score", "reason", "reason_value").collect()
        return {r["id"]: (r["text"], r["quality_score"], r["reason"], r["reason_value"]) for r in rows}

    first, again, other_seed = run(0), run(0), run(1)
    assert first == again  # a rerun keeps and drops the same documents
    ids = sorted(first)
    scores = dict(zip(ids, rule.scores([first[i][0] for i in ids])))
    assert {reason for _, _, reason, _ in first.values()} == {None, "quality_classifier_low_score"}
    for doc_id, (_, score32, reason, value) in first.items():
        assert score32 == pytest.approx(scores[doc_id], abs=1e-6)  # float32 signal
        assert (reason is None) == pareto_keep(scores[doc_id], doc_id, 9.0, 0)  # the draw is the id's
        if reason:
            assert value == scores[doc_id]  # the drop carries the score
    # Another seed: same scores, other draws.
    assert [first[i][1] for i in ids] == [other_seed[i][1] for i in ids]
    assert [pareto_keep(scores[i], i, 9.0, 1) for i in ids] == [other_seed[i][2] is None for i in ids]


def test_pareto_draw_has_gpt3_distribution():
    # Same law as np.random.pareto(9) > 1 - score, but fixed per document key.
    keys = [f"doc{i}" for i in range(20_000)]
    for score in (0.3, 0.8, 0.95):
        ours = np.mean([pareto_keep(score, k, 9.0, 7) for k in keys])
        numpy = np.mean(np.random.default_rng(0).pareto(9.0, 200_000) > 1 - score)
        assert ours == pytest.approx(numpy, abs=0.01)
        assert ours == pytest.approx((2 - score) ** -9, abs=0.01)
    assert [pareto_keep(0.5, k, 9.0, 7) for k in keys[:500]] == [pareto_keep(0.5, k, 9.0, 7) for k in keys[:500]]
    assert pareto_keep(1.0, "any", 9.0, 0)


def test_threshold_mode(fitted, corpus):
    rule, _, _ = fitted
    strict = QualityClassifier(rule.config.model_copy(update={"mode": "threshold", "threshold": 0.5}))
    strict.model = rule.model
    docs = [Document(t, {"id": str(i)}) for i, t in enumerate(corpus["speeches"][:10] + corpus["unseen_pages"][:10])]
    for verdict, score in zip(strict.check_batch(docs), rule.scores([d.text for d in docs])):
        assert verdict.signals["quality_score"] == score
        assert (verdict.reason is None) == (score >= 0.5)
        if verdict.reason:
            assert verdict.reason == "quality_classifier_low_score" and verdict.value == score


def test_without_reference_fit_says_what_to_set(corpus, spark, tmp_path):
    docs = spark.read.parquet(str(corpus["input"]))
    with pytest.raises(StageError, match=r"set filter\.quality_classifier\.reference"):
        QualityClassifier().fit(docs, tmp_path)
    with pytest.raises(RuntimeError, match="fit"):
        QualityClassifier().scores(["not fitted"])


def test_reference_text_files_are_cut_at_blank_lines_into_documents():
    text = "= Title =\n\n" + "one two three four five\n\n" * 5 + "\n \n\ntail words"
    docs = reference_documents(text, min_words=9)
    assert docs[0] == "= Title =\n\none two three four five\n\none two three four five"
    assert all(len(d.split()) >= 8 for d in docs)
    assert docs[-1].endswith("tail words")  # a short tail joins the last document
    assert reference_documents("no blank lines at all", 100) == ["no blank lines at all"]
