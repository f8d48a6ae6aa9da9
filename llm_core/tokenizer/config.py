"""The tokenizer stage's settings (``tokenizer:`` in the pipeline YAML).

``kind`` picks a subword family, and the family decides what the config does not say: its
special tokens, the token that separates documents in the shards, and its default
pre-tokenizer. Everything a bad value would silently spoil (a vocabulary smaller than the
alphabet, ids that overflow ``uint16``, a pre-tokenizer the model cannot decode) is refused
here, before any stage runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from llm_core.section import Section

Kind = Literal["byte_bpe", "wordpiece", "unigram"]
PreTokenizer = Literal["gpt2", "gpt4", "bert", "whitespace", "metaspace"]
BYTE_ALPHABET = 256  # byte-level BPE starts from the 256 bytes; byte-fallback Unigram adds them as pieces
UINT16_IDS = 2**16


@dataclass(frozen=True)
class Family:
    """What a subword family fixes: its special tokens (first in the vocabulary, in this
    order), the token between documents, the unknown token (none when every byte is in the
    vocabulary) and the pre-tokenizers it can decode (the first is its default)."""

    style: str
    specials: tuple[str, ...]
    eot: str
    unk: str | None
    pre_tokenizers: tuple[str, ...]


FAMILIES: dict[str, Family] = {
    # GPT-2: one end-of-text token; bytes never go unknown.
    "byte_bpe": Family("GPT", ("<|endoftext|>",), "<|endoftext|>", None, ("gpt2", "gpt4")),
    # BERT: documents separated by [SEP], as BERT's pre-training input is.
    "wordpiece": Family("BERT", ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"), "[SEP]", "[UNK]", ("bert", "whitespace")),
    # T5 / SentencePiece order (pad 0, eos 1, unk 2); <unk> stays for the model but byte fallback never emits it.
    "unigram": Family("T5", ("<pad>", "</s>", "<unk>"), "</s>", "<unk>", ("metaspace",)),
}


def sentinels(count: int) -> list[str]:
    """T5's span-corruption sentinels ``<extra_id_0>`` ... ``<extra_id_{count-1}>``."""
    return [f"<extra_id_{i}>" for i in range(count)]


class SampleConfig(Section):
    """Which training documents the tokenizer learns from (the shards always hold every document)."""

    # Temperature sampling over languages (the ``lang`` column): language l gets a share of
    # the training text proportional to n_l ** alpha, n_l its bytes of training text. 1 keeps
    # the corpus' proportions; lower values lift small languages (XLM-R and mT5 use 0.3, 0
    # gives every language the same share). Small languages are repeated, large ones thinned.
    alpha: float = Field(1.0, ge=0, le=1)
    # Cap on the training text in UTF-8 bytes (None: as many bytes as the training split has).
    max_bytes: int | None = Field(None, ge=1)
    # Seed of the per-document draw (which documents are kept or repeated).
    seed: int = 0


class TokenizerConfig(Section):
    kind: Kind = "byte_bpe"
    # The whole vocabulary: special tokens, sentinels, extras and (Unigram) the 256 byte pieces included.
    vocab_size: int = Field(2048, ge=16, le=1_000_000)
    # A pair (BPE) or a piece (WordPiece) seen fewer times is not merged; Unigram has no such threshold.
    min_frequency: int = Field(2, ge=1)
    # Unicode normalisation before anything else. "nfkc" folds compatibility characters
    # (full-width letters, ligatures, non-breaking spaces), so decoding no longer restores them.
    normalization: Literal["none", "nfc", "nfkc"] = "none"
    lowercase: bool = False
    # How text is cut into words before the model: None takes the family's default
    # (gpt2 for byte_bpe, bert for wordpiece, metaspace for unigram); gpt4 is cl100k's regex.
    pre_tokenizer: PreTokenizer | None = None
    # Cut numbers into single digits (as LLaMA and GPT-4 do) so that no number is one token.
    split_digits: bool = False
    # Characters a WordPiece vocabulary keeps (the most frequent); the others become [UNK].
    limit_alphabet: int | None = Field(None, ge=1)
    # Unigram: share of the training text's characters the vocabulary must hold as pieces
    # (SentencePiece's character_coverage); the rarest others are encoded as their bytes.
    character_coverage: float = Field(0.9995, gt=0, le=1)
    # T5-style sentinel tokens <extra_id_0>... for span corruption, and any other special
    # tokens of your own: each is one id that is never split, and counts in vocab_size.
    sentinel_tokens: int = Field(0, ge=0, le=1000)
    extra_tokens: list[str] = Field(default_factory=list)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    # More vocabulary sizes to train and measure on the same text (the ``sweep`` table); the
    # shards always use ``vocab_size``.
    sweep: list[int] = Field(default_factory=list)
    # Held-out text measured per language in the report (UTF-8 bytes, at most, per language).
    report_bytes: int = Field(1_000_000, ge=1)
    # Share of documents held out for validation (split by document, by hash of its id).
    val_fraction: float = Field(0.1, gt=0, lt=1)
    shard_tokens: int = Field(50_000_000, ge=1024)
    # Token id type in the shards: auto is uint16 when the vocabulary fits, else uint32.
    id_dtype: Literal["auto", "uint16", "uint32"] = "auto"

    @property
    def family(self) -> Family:
        return FAMILIES[self.kind]

    @property
    def eot_token(self) -> str:
        return self.family.eot

    def special_tokens(self) -> list[str]:
        """Every special token, in id order: the family's, the sentinels, the extras."""
        return [*self.family.specials, *sentinels(self.sentinel_tokens), *self.extra_tokens]

    def resolved_pre_tokenizer(self) -> str:
        return self.pre_tokenizer or self.family.pre_tokenizers[0]

    def smallest_vocab(self) -> int:
        """The fewest tokens this config can have before the training text adds characters:
        the special tokens, plus the 256 bytes for byte-level BPE and byte-fallback Unigram."""
        alphabet = BYTE_ALPHABET if self.kind in ("byte_bpe", "unigram") else 0
        return len(self.special_tokens()) + alphabet + 1

    @model_validator(mode="after")
    def _consistent(self) -> "TokenizerConfig":
        if self.resolved_pre_tokenizer() not in self.family.pre_tokenizers:
            raise ValueError(f"pre_tokenizer {self.pre_tokenizer} cannot be decoded by a {self.kind} model; "
                             f"use one of {list(self.family.pre_tokenizers)}")
        specials = self.special_tokens()
        repeated = sorted({t for t in specials if specials.count(t) > 1})
        if repeated or any(not t for t in specials):
            raise ValueError(f"extra_tokens must be non-empty and differ from the {self.family.style} special "
                             f"tokens and sentinels; repeated: {repeated}")
        if self.limit_alphabet is not None and self.kind != "wordpiece":
            raise ValueError(f"limit_alphabet applies to wordpiece only ({self.kind} keeps every byte)")
        for size in [self.vocab_size, *self.sweep]:
            if size < self.smallest_vocab():
                raise ValueError(f"vocabulary size {size} is smaller than the alphabet plus special tokens of a "
                                 f"{self.kind} tokenizer: it needs at least {self.smallest_vocab()}")
        if self.id_dtype == "uint16" and self.vocab_size > UINT16_IDS:
            raise ValueError(f"vocab_size {self.vocab_size} does not fit id_dtype uint16 (at most {UINT16_IDS} ids); "
                             "use uint32 or auto")
        return self
