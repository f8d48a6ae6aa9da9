"""Bad input gets a clear error or a warning in the stats, never a silently bad tokenizer."""

import json

import numpy as np
import pyarrow as pa
import pytest

from llm_core.config import parse_config
from llm_core.documents import DOCUMENT_SCHEMA, write_documents
from llm_core.errors import ConfigError, StageError
from llm_core.tokenizer import build_tokenizer_and_shards
from llm_core.tokenizer.config import SampleConfig, TokenizerConfig
from llm_core.tokenizer.shards import token_dtype


def write(rows, docs_dir):
    full = [{"url": f"http://x/{r['id']}", "source": "local", **r} for r in rows]
    write_documents(pa.Table.from_pylist(full, schema=DOCUMENT_SCHEMA), docs_dir)
    return docs_dir


@pytest.fixture(scope="module")
def english(shared_data, tmp_path_factory):
    text = (shared_data / "text_tinyshakespeare" / "input.txt").read_text()[:300_000]
    scenes = [s for s in text.split("\n\n") if s.strip()]
    rows = [{"id": f"d{i}", "text": "\n\n".join(scenes[i * 40:(i + 1) * 40]), "lang": "en"} for i in range(len(scenes) // 40)]
    return write(rows, tmp_path_factory.mktemp("english") / "docs")


def test_empty_corpus(tmp_path):
    (tmp_path / "docs").mkdir()
    with pytest.raises(StageError, match=r"\[tokenizer\] need at least 2 documents .* got 0"):
        build_tokenizer_and_shards(TokenizerConfig(), tmp_path / "docs", tmp_path)
    docs = write([{"id": "a", "text": ""}, {"id": "b", "text": None}, {"id": "c", "text": "one"}], tmp_path / "blank")
    with pytest.raises(StageError, match=r"got 1 .*\(2 without text\)"):
        build_tokenizer_and_shards(TokenizerConfig(), docs, tmp_path)


@pytest.mark.parametrize("section, message", [
    ({"vocab_size": 200}, r"vocabulary size 200 is smaller than the alphabet plus special tokens .* at least 258"),
    ({"kind": "unigram", "vocab_size": 259}, r"at least 260"),
    ({"kind": "unigram", "vocab_size": 400, "sentinel_tokens": 150}, r"at least 410"),
    ({"vocab_size": 4096, "sweep": [100]}, r"vocabulary size 100 is smaller"),
    ({"vocab_size": 70_000, "id_dtype": "uint16"}, r"vocab_size 70000 does not fit id_dtype uint16"),
    ({"kind": "wordpiece", "pre_tokenizer": "gpt2"}, r"pre_tokenizer gpt2 cannot be decoded by a wordpiece model"),
    ({"kind": "byte_bpe", "limit_alphabet": 100}, r"limit_alphabet applies to wordpiece only"),
    ({"extra_tokens": ["<|endoftext|>"]}, r"repeated: \['<\|endoftext\|>'\]"),
    ({"kind": "bpe"}, r"tokenizer\.kind"),
])
def test_invalid_config_is_refused_before_any_stage(section, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"tokenizer": section})


def test_alphabet_larger_than_the_vocabulary(tmp_path, shared_data):
    poems = json.loads((shared_data / "text_zh_chinese_poetry" / "宋词" / "ci.song.0.json").read_text())[:400]
    rows = [{"id": f"z{i}", "text": "\n".join("\n".join(p["paragraphs"]) for p in poems[i:i + 20]), "lang": "zh"}
            for i in range(0, 400, 20)]
    docs = write(rows, tmp_path / "docs")
    with pytest.raises(StageError, match=r"wordpiece vocabulary came out at \d+ tokens, more than the 500 .*tokenizer.limit_alphabet"):
        build_tokenizer_and_shards(TokenizerConfig(kind="wordpiece", vocab_size=500), docs, tmp_path)
    with pytest.raises(StageError, match=r"unigram vocabulary of 600 tokens cannot hold every character"):
        build_tokenizer_and_shards(TokenizerConfig(kind="unigram", vocab_size=600), docs, tmp_path)
    out = tmp_path / "limited"
    out.mkdir()
    config = TokenizerConfig(kind="wordpiece", vocab_size=500, limit_alphabet=300, sweep=[300, 400])
    stats = build_tokenizer_and_shards(config, docs, out)
    zh = next(r for r in stats["languages"] if r["lang"] == "zh")
    assert 0 < zh["unk_rate"] < 0.5, "the characters left out are counted as unknown, not hidden"
    # A sweep size too small for the 300 characters kept is skipped with a warning; the stage stands.
    assert any(w.startswith("sweep size 300 skipped") for w in stats["warnings"])
    assert sorted({r["vocab_size"] for r in stats["sweep"]}) == [400, 500]


def test_ids_that_do_not_fit_the_id_type():
    assert token_dtype(65_536) == np.uint16 and token_dtype(65_537) == np.uint32
    assert token_dtype(1000, "uint32") == np.uint32
    with pytest.raises(ValueError, match="does not fit uint16"):
        token_dtype(65_537, "uint16")


def test_one_language_with_a_multilingual_config_is_warned(english, tmp_path):
    stats = build_tokenizer_and_shards(TokenizerConfig(vocab_size=600, sample=SampleConfig(alpha=0.3)), english, tmp_path)
    assert any("every training document is in one language (en)" in w for w in stats["warnings"])
    assert "> warning: tokenizer.sample.alpha=0.3" in (tmp_path / "report.md").read_text()


def test_unlabelled_documents_and_heavy_repetition_are_warned(english, shared_data, tmp_path):
    rows = [{"id": f"u{i}", "text": f"unlabelled document number {i} " * 20} for i in range(30)]
    rows.append({"id": "fr0", "text": "Un petit texte en français, rien de plus. " * 3, "lang": "fr"})
    docs = write(rows + [{"id": f"e{i}", "text": "An English line of text. " * 200, "lang": "en"} for i in range(40)],
                 tmp_path / "docs")
    out = tmp_path / "out"
    out.mkdir()
    stats = build_tokenizer_and_shards(TokenizerConfig(vocab_size=400, sample=SampleConfig(alpha=0.0)), docs, out)
    assert any("have no language label" in w for w in stats["warnings"])
    # alpha 0: fr (one short training document, "fr0" hashes to the training split) gets a third of the sample.
    fr = next(r for r in stats["sampling"] if r["lang"] == "fr")
    assert fr["mean_copies"] > 10 and fr["sampled_share"] == pytest.approx(1 / 3, abs=0.05)
    assert any(w.startswith("language fr: its 1 training documents are repeated") for w in stats["warnings"])


def test_a_sample_cap_that_leaves_nothing(english, tmp_path):
    with pytest.raises(StageError, match=r"training sample is empty .*max_bytes=1\)"):
        build_tokenizer_and_shards(TokenizerConfig(sample=SampleConfig(max_bytes=1)), english, tmp_path)
