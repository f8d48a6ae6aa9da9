import pyarrow as pa
import pytest

from llm_core.config import FilterConfig
from llm_core.documents import DOCS_DIR, DOCUMENT_SCHEMA, REJECTED_DIR, read_documents, write_documents
from llm_core.errors import StageError
from llm_core.filters import filter_documents
from llm_core.filters.langid import detect_language


def paragraphs(shared_data, lang, count, sentences_per_doc=12):
    lines = (shared_data / "langid_lingua_testdata" / "sentences" / f"{lang}.txt").read_text().splitlines()
    lines = [line for line in lines if line.strip()]
    return [" ".join(lines[i * sentences_per_doc:(i + 1) * sentences_per_doc]) for i in range(count)]


def write(tmp_path, texts):
    rows = [{"id": f"d{i}", "url": f"http://x/{i}", "source": "test", "text": t} for i, t in enumerate(texts)]
    write_documents(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), tmp_path / "in")
    return tmp_path / "in"


@pytest.mark.parametrize("lang", ["en", "de", "fr", "es", "ja"])
def test_language_id_on_real_sentences(shared_data, lang):
    docs = paragraphs(shared_data, lang, 10, sentences_per_doc=3)
    hits = sum(detect_language(d)[0] == lang for d in docs)
    assert hits >= 9, f"{lang}: {hits}/10"


def test_filter_stage_keeps_audits_and_counts(shared_data, spark_config, tmp_path):
    english = paragraphs(shared_data, "en", 6)
    german = paragraphs(shared_data, "de", 3)
    junk = ["12 34 56 78 -- ## == " * 20, "too short to keep"]
    docs_dir = write(tmp_path, english + german + junk)
    stats = filter_documents(FilterConfig(languages=["en"], min_words=50), spark_config, docs_dir, tmp_path / "out")

    kept = read_documents(tmp_path / "out" / DOCS_DIR)
    rejected = read_documents(tmp_path / "out" / REJECTED_DIR)
    assert sorted(kept.column("id").to_pylist()) == [f"d{i}" for i in range(6)]
    assert set(kept.column("lang").to_pylist()) == {"en"}
    assert min(kept.column("lang_score").to_pylist()) > 0.65
    assert "reason" not in kept.column_names and "quality_words" in kept.column_names
    reasons = dict(zip(rejected.column("id").to_pylist(), rejected.column("reason").to_pylist()))
    assert reasons == {"d6": "language_not_allowed", "d7": "language_not_allowed", "d8": "language_not_allowed",
                       "d9": "language_low_confidence", "d10": "too_few_words"}
    assert rejected.column("text").to_pylist()[0], "rejected documents keep their text for audit"
    assert stats["docs_in"] == 11 and stats["docs_out"] == 6
    assert stats["dropped"] == {"language_not_allowed": 3, "language_low_confidence": 1, "too_few_words": 1}


def test_everything_filtered_is_a_clear_error(shared_data, spark_config, tmp_path):
    docs_dir = write(tmp_path, paragraphs(shared_data, "de", 3))
    with pytest.raises(StageError, match=r"\[filter\] all 3 documents were filtered out.*language_not_allowed"):
        filter_documents(FilterConfig(languages=["en"]), spark_config, docs_dir, tmp_path / "out")
    assert not (tmp_path / "out" / DOCS_DIR).exists()


def test_quality_rules_in_isolation():
    from llm_core.filters.quality import quality_reason, quality_signals

    config = FilterConfig(min_words=5)
    assert quality_reason(quality_signals("one two three"), config) == "too_few_words"
    assert quality_reason(quality_signals("1 2 3 4 5 6 7 8 a b"), config) == "non_alpha_words"
    assert quality_reason(quality_signals("a b c d e f g h"), config) == "mean_word_length"
    assert quality_reason(quality_signals("these are perfectly ordinary english words here"), config) is None
