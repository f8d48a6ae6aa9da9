"""Languages: temperature sampling of the training text, and the report's figures per
language and per vocabulary size, checked against values counted by hand."""

import json

import pyarrow as pa
import pytest
from tokenizers import models

from llm_core.documents import DOCUMENT_SCHEMA, write_documents
from llm_core.tokenizer import build_tokenizer_and_shards
from llm_core.tokenizer.config import SampleConfig, TokenizerConfig
from llm_core.tokenizer.corpus import Count, draw, sampling_rates
from llm_core.tokenizer.families import new_tokenizer
from llm_core.tokenizer.report import count_words, measure


def bilingual_docs(shared_data, docs_dir):
    """80 English documents (Shakespeare, ~1.1 MB) and 30 Chinese ones (300 Song ci, ~7% of the bytes)."""
    text = (shared_data / "text_tinyshakespeare" / "input.txt").read_text()
    scenes = [s for s in text.split("\n\n") if s.strip()]
    chunk = len(scenes) // 80
    english = ["\n\n".join(scenes[i * chunk:(i + 1) * chunk]) for i in range(80)]
    poems = json.loads((shared_data / "text_zh_chinese_poetry" / "宋词" / "ci.song.0.json").read_text())[:300]
    chinese = ["\n\n".join("\n".join(p["paragraphs"]) for p in poems[i:i + 10]) for i in range(0, 300, 10)]
    rows = [{"id": f"en{i}", "url": f"http://x/en/{i}", "source": "local", "text": t, "lang": "en"}
            for i, t in enumerate(english)]
    rows += [{"id": f"zh{i}", "url": f"http://x/zh/{i}", "source": "local", "text": t, "lang": "zh"}
             for i, t in enumerate(chinese)]
    write_documents(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), docs_dir)
    return docs_dir


@pytest.fixture(scope="module")
def bilingual(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("bilingual")
    docs = bilingual_docs(shared_data, root / "docs")
    results = {}
    for alpha in (1.0, 0.3):
        out = root / f"alpha-{alpha}"
        out.mkdir()
        config = TokenizerConfig(vocab_size=1000, sample=SampleConfig(alpha=alpha), sweep=[500, 700] if alpha == 1 else [])
        results[alpha] = build_tokenizer_and_shards(config, docs, out)
    return results


def test_sampling_rates_by_hand():
    train = {"en": Count(docs=90, bytes=900), "zh": Count(docs=10, bytes=100)}
    assert sampling_rates(train, SampleConfig(alpha=1.0)) == pytest.approx({"en": 1.0, "zh": 1.0})
    # alpha 0.3: shares 0.9**0.3 = 0.96889 and 0.1**0.3 = 0.50119, normalised 0.65908 / 0.34092.
    assert sampling_rates(train, SampleConfig(alpha=0.3)) == pytest.approx({"en": 0.65908 / 0.9, "zh": 0.34092 / 0.1},
                                                                           rel=1e-4)
    assert sampling_rates(train, SampleConfig(alpha=0.0)) == pytest.approx({"en": 0.5 / 0.9, "zh": 0.5 / 0.1})
    # A cap of 500 bytes at alpha 1: every language halved.
    assert sampling_rates(train, SampleConfig(max_bytes=500)) == pytest.approx({"en": 0.5, "zh": 0.5})
    copies = [draw(f"d{i}", 2.25, seed=0) for i in range(4000)]
    assert set(copies) == {2, 3} and sum(copies) / 4000 == pytest.approx(2.25, abs=0.03)
    assert copies == [draw(f"d{i}", 2.25, seed=0) for i in range(4000)] != [draw(f"d{i}", 2.25, seed=1) for i in range(4000)]


def test_temperature_sampling_lifts_the_small_language(bilingual):
    natural, tempered = ({row["lang"]: row for row in bilingual[a]["sampling"]} for a in (1.0, 0.3))
    assert natural["zh"]["sampled_share"] == natural["zh"]["share"] < 0.1
    assert natural["zh"]["mean_copies"] == natural["en"]["mean_copies"] == 1.0
    en, zh = natural["en"]["share"], natural["zh"]["share"]
    expected = zh ** 0.3 / (zh ** 0.3 + en ** 0.3)
    assert tempered["zh"]["sampled_share"] == pytest.approx(expected, abs=0.05)
    assert tempered["zh"]["mean_copies"] > 3 and tempered["en"]["mean_copies"] < 1
    # Its vocabulary then holds more Chinese: fewer tokens for the same held-out Chinese text.
    bpt = {a: {r["lang"]: r["bytes_per_token"] for r in bilingual[a]["languages"]} for a in (1.0, 0.3)}
    assert bpt[0.3]["zh"] > bpt[1.0]["zh"] and bpt[0.3]["en"] < bpt[1.0]["en"]
    assert not bilingual[0.3]["warnings"]


def test_report_per_language_and_sweep(bilingual):
    stats = bilingual[1.0]
    rows = {r["lang"]: r for r in stats["languages"]}
    assert set(rows) == {"en", "zh", "all"}
    assert rows["all"]["tokens"] == rows["en"]["tokens"] + rows["zh"]["tokens"]
    assert rows["zh"]["tokens_per_word"] > 1 and rows["en"]["unk_rate"] == rows["zh"]["unk_rate"] == 0.0
    assert stats["bytes_per_token"] == rows["all"]["bytes_per_token"]
    sweep = [r for r in stats["sweep"] if r["lang"] == "all"]
    assert [r["tokenizer"] for r in sweep] == ["byte_bpe-500", "byte_bpe-700", "byte_bpe-1000"]
    assert sweep[0]["bytes_per_token"] < sweep[1]["bytes_per_token"] < sweep[2]["bytes_per_token"]
    assert sweep[2]["bytes_per_token"] == rows["all"]["bytes_per_token"]


def test_report_figures_against_hand_counts():
    """A WordPiece vocabulary written by hand, so every figure can be counted on paper."""
    tokenizer, _ = new_tokenizer(TokenizerConfig(kind="wordpiece", vocab_size=100), 100)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "##s", "sat", "on", ".", "世", "界"]
    tokenizer.model = models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]")
    # en: the | cat ##s | sat | on | the | [UNK] (mat) | .  -> 8 tokens, 6 words, 24 bytes, 1 unknown
    # zh: 世 | 界 | [UNK] (你) | [UNK] (好)                   -> 4 tokens, 4 words, 12 bytes, 2 unknown
    rows = {r["lang"]: r for r in measure(tokenizer, {"en": ["the cats sat on the mat."], "zh": ["世界你好"]})}
    assert rows["en"] == {"lang": "en", "docs": 1, "bytes": 24, "words": 6, "tokens": 8, "bytes_per_token": 3.0,
                          "tokens_per_word": round(8 / 6, 4), "unk_rate": 0.125, "vocab_used_share": round(7 / 13, 4)}
    assert rows["zh"] == {"lang": "zh", "docs": 1, "bytes": 12, "words": 4, "tokens": 4, "bytes_per_token": 3.0,
                          "tokens_per_word": 1.0, "unk_rate": 0.5, "vocab_used_share": round(3 / 13, 4)}
    assert rows["all"] == {"lang": "all", "docs": 2, "bytes": 36, "words": 10, "tokens": 12, "bytes_per_token": 3.0,
                           "tokens_per_word": 1.2, "unk_rate": 0.25, "vocab_used_share": round(9 / 13, 4)}


def test_words_are_counted_per_character_in_chinese_and_japanese():
    assert count_words("床前明月光，疑是地上霜。") == 10
    assert count_words("吾輩は猫である。") == 7
    assert count_words("To be, or not to be -- that is the question") == 10
    assert count_words("  \n\t ") == 0

