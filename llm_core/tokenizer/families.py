"""The three subword families, assembled from Hugging Face ``tokenizers`` parts.

- ``byte_bpe`` (GPT): byte-level BPE. Every byte is a token, so nothing is unknown and
  decoding gives back the text exactly.
- ``wordpiece`` (BERT): BERT's normaliser (control characters dropped, each CJK character a
  word) and pre-tokenizer, ``##`` continuation pieces, and the ``[CLS] A [SEP] B [SEP]``
  template, so a BERT objective gets its inputs from ``encode(a, b)``.
- ``unigram`` (T5 / SentencePiece): Metaspace (``▁`` for a space) with byte fallback, as
  LLaMA's SentencePiece model: a character outside the vocabulary becomes its UTF-8 bytes
  (``<0xE6>``...), never ``<unk>``. No dummy prefix is added, so decoding is exact (a literal
  ``▁`` in the text comes back as a space, as in SentencePiece).

``tokenizers``' Unigram trainer does not add byte pieces, so they are added after training
(:func:`finish`), and the trainer is asked for 256 pieces fewer. Nor does it have
SentencePiece's ``character_coverage``: every character it sees must fit in the vocabulary,
so the rarest characters are taken out of its training text (:func:`rare_characters`) and
reach the model as bytes.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Iterable, Iterator

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from llm_core.tokenizer.config import BYTE_ALPHABET, TokenizerConfig

# GPT-4's (cl100k) split: letters with one leading non-letter, numbers of 1-3 digits, punctuation runs.
GPT4_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
BYTE_PIECES = [f"<0x{b:02X}>" for b in range(BYTE_ALPHABET)]
HF_CONFIG_FILE = "tokenizer_config.json"


def _normalizer(config: TokenizerConfig):
    steps = []
    if config.normalization != "none":
        steps.append(normalizers.NFC() if config.normalization == "nfc" else normalizers.NFKC())
    if config.kind == "wordpiece":  # BERT's cleanup; accents are kept (strip_accents needs lowercase in BERT)
        steps.append(normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False,
                                                lowercase=config.lowercase))
    elif config.lowercase:
        steps.append(normalizers.Lowercase())
    return normalizers.Sequence(steps) if steps else None


def _pre_tokenizer(config: TokenizerConfig):
    steps = [pre_tokenizers.Digits(individual_digits=True)] if config.split_digits else []
    name = config.resolved_pre_tokenizer()
    if name == "gpt2":
        steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True))
    elif name == "gpt4":
        steps += [pre_tokenizers.Split(Regex(GPT4_SPLIT), behavior="isolated"),
                  pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    elif name == "bert":
        steps.append(pre_tokenizers.BertPreTokenizer())
    elif name == "whitespace":
        steps.append(pre_tokenizers.Whitespace())
    else:  # metaspace
        steps.append(pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never"))
    return steps[0] if len(steps) == 1 else pre_tokenizers.Sequence(steps)


def new_tokenizer(config: TokenizerConfig, vocab_size: int) -> tuple[Tokenizer, trainers.Trainer]:
    """An untrained tokenizer of the configured family and the trainer that fills it."""
    specials = config.special_tokens()
    if config.kind == "byte_bpe":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=config.min_frequency,
                                      special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
    elif config.kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=config.family.unk))
        tokenizer.decoder = decoders.WordPiece(prefix="##")
        limit = {"limit_alphabet": config.limit_alphabet} if config.limit_alphabet else {}
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=config.min_frequency,
                                            special_tokens=specials, continuing_subword_prefix="##",
                                            show_progress=False, **limit)
    else:
        tokenizer = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size - BYTE_ALPHABET, special_tokens=specials,
                                          unk_token=config.family.unk, show_progress=False)
    normalizer = _normalizer(config)
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = _pre_tokenizer(config)
    return tokenizer, trainer


def rare_characters(text: Iterable[str], coverage: float) -> dict[int, None]:
    """The least frequent characters that together make up no more than ``1 - coverage`` of
    the text's characters, as a ``str.translate`` table that deletes them."""
    counts: Counter[str] = Counter()
    for doc in text:
        counts.update(doc)
    budget = (1.0 - coverage) * sum(counts.values())
    rare: dict[int, None] = {}
    for char, count in sorted(counts.items(), key=lambda item: (item[1], item[0])):
        budget -= count
        if budget < 0:
            break
        rare[ord(char)] = None
    return rare


def without(text: Iterable[str], table: dict[int, None]) -> Iterator[str]:
    return (doc.translate(table) for doc in text) if table else iter(text)


def finish(tokenizer: Tokenizer, config: TokenizerConfig) -> Tokenizer:
    """What training leaves out: Unigram's byte pieces and fallback, BERT's template."""
    if config.kind == "unigram":
        model = json.loads(tokenizer.to_str())["model"]  # {"unk_id", "vocab": [[piece, score]...]}
        pieces = [tuple(p) for p in model["vocab"]]
        known = {p for p, _ in pieces}
        lowest = min(score for _, score in pieces) - 10.0  # never preferred over a learnt piece
        pieces += [(b, lowest) for b in BYTE_PIECES if b not in known]
        tokenizer.model = models.Unigram(pieces, model["unk_id"], byte_fallback=True)
        tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    elif config.kind == "wordpiece":
        cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
        )
    return tokenizer


def hf_config(config: TokenizerConfig) -> dict:
    """``tokenizer_config.json``: what ``transformers`` needs beside tokenizer.json to know the
    special tokens' roles (``AutoTokenizer.from_pretrained`` on the output folder)."""
    roles = {
        "byte_bpe": {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"},
        "wordpiece": {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                      "mask_token": "[MASK]"},
        "unigram": {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
    }[config.kind]
    extra = config.special_tokens()[len(config.family.specials):]
    return {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
            "model_max_length": 1_000_000_000, **roles, "additional_special_tokens": extra}


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray:
    """UTF-8 bytes each token id stands for (0 for special tokens such as end-of-text).

    Exact for byte-level BPE, where every character of a token is one byte (decoding a
    single id instead would garble tokens that hold part of a multi-byte character), and
    for byte-fallback Unigram without normalisation (``▁`` is one space, ``<0xNN>`` one
    byte). WordPiece drops the spaces between words, and any normalisation changes the
    bytes, so there the figure is the bytes of the normalised pieces (an estimate)."""
    lengths = np.zeros(tokenizer.get_vocab_size(), dtype=np.int64)
    special = {t.content for t in tokenizer.get_added_tokens_decoder().values()}
    model = tokenizer.model
    if isinstance(model, models.BPE):
        alphabet = set(pre_tokenizers.ByteLevel.alphabet())  # the 256 characters that stand for the 256 bytes
        measure = lambda token: sum(1 for ch in token if ch in alphabet)  # noqa: E731
    elif isinstance(model, models.WordPiece):
        measure = lambda token: len(token.removeprefix("##").encode("utf-8"))  # noqa: E731
    else:
        pieces = set(BYTE_PIECES)
        measure = lambda token: 1 if token in pieces else len(token.replace("▁", " ").encode("utf-8"))  # noqa: E731
    for token, token_id in tokenizer.get_vocab().items():
        if token not in special:
            lengths[token_id] = measure(token)
    return lengths
