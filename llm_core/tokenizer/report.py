"""The tokenizer report: how well a vocabulary fits each language, measured on held-out text.

Per language, on validation documents the tokenizer never saw:

- ``bytes_per_token``: UTF-8 bytes of text per token; more is better compression, a shorter
  sequence for the same text;
- ``tokens_per_word`` (fertility): tokens per word, where a word is a run of non-space
  characters with a letter or digit in it (punctuation alone is not a word), except that
  each Han or kana character counts as a word of its own (Chinese and Japanese put no
  spaces between words; a character is their unit, as in BERT). Near 1 is a vocabulary
  that holds the language's words whole;
- ``unk_rate``: share of tokens that are the unknown token (0 by construction for
  byte-level BPE and byte-fallback Unigram);
- ``vocab_used_share``: share of the vocabulary's ids that occur at all: a low share on a
  large held-out sample is a vocabulary too large for the corpus.

Text is encoded as the shards encode it: no template tokens, special-token text as text.
"""

from __future__ import annotations

import json
import re
from itertools import chain
from typing import Any

import numpy as np
from tokenizers import Tokenizer

_HAN_KANA = ("\u2e80-\u2fdf\u3005-\u3007\u3021-\u3029\u3038-\u303b\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf"
             "\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003ffff")
WORD = re.compile(f"[{_HAN_KANA}]|[^\\s{_HAN_KANA}]*[^\\W{_HAN_KANA}][^\\s{_HAN_KANA}]*")
ALL = "all"  # the row over every language


def count_words(text: str) -> int:
    return len(WORD.findall(text))


def unknown_id(tokenizer: Tokenizer) -> int | None:
    """The id of the model's unknown token, if it has one (counted even where byte fallback
    should never emit it: the report measures that it does not)."""
    model = json.loads(tokenizer.to_str())["model"]
    if model.get("unk_id") is not None:  # Unigram
        return int(model["unk_id"])
    return tokenizer.token_to_id(model["unk_token"]) if model.get("unk_token") else None


def _row(lang: str, docs: int, size: int, words: int, ids: np.ndarray, unk: int | None, vocab: int) -> dict[str, Any]:
    tokens = len(ids)
    return {
        "lang": lang, "docs": docs, "bytes": size, "words": words, "tokens": tokens,
        "bytes_per_token": round(size / tokens, 4) if tokens else 0.0,
        "tokens_per_word": round(tokens / words, 4) if words else 0.0,
        "unk_rate": round(int(np.count_nonzero(ids == unk)) / tokens, 6) if tokens and unk is not None else 0.0,
        "vocab_used_share": round(len(np.unique(ids)) / vocab, 4),
    }


def measure(tokenizer: Tokenizer, heldout: dict[str, list[str]]) -> list[dict[str, Any]]:
    """One row per language of ``heldout`` (language -> texts), then one over all of them."""
    unk, vocab = unknown_id(tokenizer), tokenizer.get_vocab_size()
    was = tokenizer.encode_special_tokens
    tokenizer.encode_special_tokens = True
    rows, every = [], []
    try:
        for lang, texts in heldout.items():
            encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
            ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), np.int64)
            size = sum(len(t.encode("utf-8")) for t in texts)
            rows.append(_row(lang, len(texts), size, sum(count_words(t) for t in texts), ids, unk, vocab))
            every.append(ids)
    finally:
        tokenizer.encode_special_tokens = was
    if rows:
        totals = {k: sum(r[k] for r in rows) for k in ("docs", "bytes", "words")}
        rows.append(_row(ALL, totals["docs"], totals["bytes"], totals["words"], np.concatenate(every), unk, vocab))
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["(none)"]
    keys = list(rows[0])
    return ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys),
            *("| " + " | ".join(str(row[k]) for k in keys) + " |" for row in rows)]


def report_markdown(stats: dict[str, Any], tables: tuple[str, ...]) -> str:
    """The report as Markdown: the headline figures, the warnings, then each table."""
    lines = [f"# Tokenizer: {stats['kind']}, {stats['vocab_size']} tokens", ""]
    for key in ("bytes_per_token", "tokens_per_word", "unk_rate", "vocab_used_share", "train_s", "encode_s"):
        lines.append(f"- {key}: {stats.get(key)}")
    lines += ["", *(f"> warning: {w}" for w in stats.get("warnings", []))]
    for table in tables:
        if stats.get(table):
            lines += ["", f"## {table}", "", *markdown_table(stats[table])]
    return "\n".join(lines) + "\n"
