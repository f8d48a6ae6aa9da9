"""The three subword families on real text: lossless round trips, atomic special tokens,
a WordPiece tokenizer a BERT objective can use, and files transformers can load."""

import json
from collections import Counter

import numpy as np
import pytest
from tokenizers import Tokenizer

from llm_core.tokenizer.config import TokenizerConfig
from llm_core.tokenizer.families import HF_CONFIG_FILE, hf_config, token_byte_lengths
from llm_core.tokenizer.train import train_tokenizer

# Chinese, emoji (one with a zero-width joiner), accents, and whitespace of every sort:
# tabs, runs of spaces, CRLF, no-break and ideographic spaces, a line separator, a leading space.
HARD_TEXT = (" Leading space.  Two spaces,\ttab\r\nCRLF\n\n\nthree newlines — naïve café Ünïcödé\u00a0nbsp "
             "東京は晴れ。床前明月光，疑是地上霜。\u3000全角 👩\u200d💻 🙂🎉 trailing  \u2028end ")


@pytest.fixture(scope="module")
def texts(shared_data):
    """~150 KB of Shakespeare and 100 Song ci poems."""
    english = (shared_data / "text_tinyshakespeare" / "input.txt").read_text()[:150_000]
    poems = json.loads((shared_data / "text_zh_chinese_poetry" / "宋词" / "ci.song.0.json").read_text())[:100]
    return [d for d in english.split("\n\n") if d.strip()] + ["\n".join(p["paragraphs"]) for p in poems]


def trained(texts, **settings):
    if settings.get("kind") == "wordpiece":  # the poems' ~1,600 characters would not fit beside the pieces
        settings.setdefault("limit_alphabet", 400)
    config = TokenizerConfig(**settings)
    return config, train_tokenizer(config, texts)


@pytest.mark.parametrize("settings", [
    {"kind": "byte_bpe", "vocab_size": 1000},
    {"kind": "byte_bpe", "vocab_size": 1000, "pre_tokenizer": "gpt4", "split_digits": True},
    {"kind": "unigram", "vocab_size": 1000, "character_coverage": 0.98},
], ids=["byte_bpe", "byte_bpe-gpt4-digits", "unigram-byte-fallback"])
def test_round_trip_is_lossless(texts, settings):
    config, tokenizer = trained(texts, **settings)
    assert tokenizer.get_vocab_size() == config.vocab_size
    samples = [HARD_TEXT, texts[5], texts[-3], "", " ", "\n", "Ω≈ç√∫˜µ≤≥÷ 🏳️‍🌈 \U0001F9EC 𠀀𪚥"]
    for text in samples:
        ids = tokenizer.encode(text).ids
        assert tokenizer.decode(ids) == text
    # The rare characters left out of the Unigram vocabulary come back through their bytes, never <unk>.
    assert "<unk>" not in tokenizer.encode(HARD_TEXT).tokens
    lengths = token_byte_lengths(tokenizer)
    ids = tokenizer.encode(HARD_TEXT).ids
    assert int(lengths[ids].sum()) == len(HARD_TEXT.encode("utf-8")), "each token's bytes add up to the text's"


@pytest.mark.parametrize("kind", ["byte_bpe", "wordpiece", "unigram"])
def test_special_tokens_are_present_and_atomic(texts, kind):
    config, tokenizer = trained(texts, kind=kind, vocab_size=1200, sentinel_tokens=3, extra_tokens=["<|user|>"],
                                character_coverage=0.98)
    specials = config.special_tokens()
    assert specials[:len(config.family.specials)] == list(config.family.specials)
    assert {"<extra_id_0>", "<extra_id_2>", "<|user|>", config.eot_token} <= set(specials)
    for token_id, token in enumerate(specials):  # first in the vocabulary, in order
        assert tokenizer.token_to_id(token) == token_id
        encoded = tokenizer.encode(f"some text {token} more text", add_special_tokens=False)
        assert encoded.ids.count(token_id) == 1, f"{token} must be one id, never split or merged"
        assert token in encoded.tokens
    assert tokenizer.get_vocab_size() == 1200


def test_wordpiece_serves_a_bert_objective(texts):
    config, tokenizer = trained(texts, kind="wordpiece", vocab_size=3000, lowercase=True)
    ids = {t: tokenizer.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
    assert list(ids.values()) == [0, 1, 2, 3, 4]
    pair = tokenizer.encode("To be, or not to be", "that is the question")
    assert pair.tokens[0] == "[CLS]" and pair.tokens[-1] == "[SEP]" and pair.tokens.count("[SEP]") == 2
    first_sep = pair.tokens.index("[SEP]")
    assert set(pair.type_ids[: first_sep + 1]) == {0} and set(pair.type_ids[first_sep + 1:]) == {1}
    assert "##" in "".join(tokenizer.get_vocab()), "continuation pieces carry the ## prefix"
    masked = tokenizer.encode("to be [MASK] not to be")
    assert ids["[MASK]"] in masked.ids
    assert tokenizer.decode(tokenizer.encode("TO BE OR NOT").ids) == "to be or not"
    # Each Chinese character is a word of its own, so Chinese does not vanish into [UNK].
    common = "".join(c for c, _ in Counter(c for t in texts for c in t if "\u4e00" <= c <= "\u9fff").most_common(5))
    chinese = tokenizer.encode(common, add_special_tokens=False)
    assert len(chinese.ids) == 5 and ids["[UNK]"] not in chinese.ids


@pytest.mark.parametrize("kind", ["byte_bpe", "wordpiece", "unigram"])
def test_saved_tokenizer_loads_in_tokenizers_and_transformers(texts, kind, tmp_path):
    config, tokenizer = trained(texts, kind=kind, vocab_size=1200, character_coverage=0.98)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / HF_CONFIG_FILE).write_text(json.dumps(hf_config(config)))
    loaded = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    sample = "Good morrow, cousin. 床前明月光"
    assert loaded.encode(sample).ids == tokenizer.encode(sample).ids
    transformers = pytest.importorskip("transformers")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    assert fast.encode(sample) == tokenizer.encode(sample).ids
    auto = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert auto.convert_tokens_to_ids(config.eot_token) == tokenizer.token_to_id(config.eot_token)
    if kind == "wordpiece":
        assert (auto.cls_token, auto.sep_token, auto.mask_token, auto.pad_token) == ("[CLS]", "[SEP]", "[MASK]", "[PAD]")
        assert auto("a", "b")["input_ids"] == tokenizer.encode("a", "b").ids
    if kind != "wordpiece":
        assert auto.decode(auto.encode(sample)) == sample


def test_byte_lengths_of_pieces(texts):
    """Bits per byte in the evaluation reads these: bytes of each piece, 0 for special tokens."""
    _, wordpiece = trained(texts, kind="wordpiece", vocab_size=1500)
    lengths = token_byte_lengths(wordpiece)
    assert lengths[wordpiece.token_to_id("[SEP]")] == 0
    piece = next(t for t in wordpiece.get_vocab() if t.startswith("##") and len(t) > 3)
    assert lengths[wordpiece.token_to_id(piece)] == len(piece) - 2
    _, unigram = trained(texts, kind="unigram", vocab_size=1000, character_coverage=0.98)
    lengths = token_byte_lengths(unigram)
    assert lengths[unigram.token_to_id("<0xE6>")] == 1 and lengths[unigram.token_to_id("</s>")] == 0
    assert np.all(lengths[[i for t, i in unigram.get_vocab().items() if t.startswith("▁") and len(t) > 1]] >= 2)
