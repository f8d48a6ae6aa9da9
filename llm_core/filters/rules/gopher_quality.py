"""Gopher-style quality rules (Rae et al. 2021): word count, mean word length, words without letters."""

from __future__ import annotations

import re
from typing import ClassVar

import pyarrow as pa
from pydantic import Field

from llm_core.filters.rule import Document, Rule, RuleConfig, Verdict

_HAS_ALPHA = re.compile(r"[^\W\d_]", re.UNICODE)


class GopherQualityConfig(RuleConfig):
    min_words: int = Field(50, ge=0)
    max_words: int = Field(100_000, ge=1)
    min_mean_word_length: float = Field(3.0, ge=0)
    max_mean_word_length: float = Field(10.0, gt=0)
    # Gopher keeps documents where >= 80% of words have an alphabetic character.
    max_non_alpha_words_ratio: float = Field(0.2, ge=0, le=1)


class GopherQuality(Rule):
    name = "gopher_quality"
    Config = GopherQualityConfig
    signals: ClassVar = {
        "gopher_words": pa.int32(),
        "gopher_mean_word_length": pa.float32(),
        "gopher_non_alpha_words_ratio": pa.float32(),
    }

    def check(self, doc: Document) -> Verdict:
        c = self.config
        words = doc.text.split()
        n = len(words)
        mean_len = sum(len(w) for w in words) / n if n else 0.0
        non_alpha = sum(1 for w in words if not _HAS_ALPHA.search(w)) / n if n else 1.0
        signals = {"gopher_words": n, "gopher_mean_word_length": mean_len, "gopher_non_alpha_words_ratio": non_alpha}
        if n < c.min_words:
            return Verdict.drop("gopher_too_few_words", n, **signals)
        if n > c.max_words:
            return Verdict.drop("gopher_too_many_words", n, **signals)
        if not c.min_mean_word_length <= mean_len <= c.max_mean_word_length:
            return Verdict.drop("gopher_mean_word_length", mean_len, **signals)
        if non_alpha > c.max_non_alpha_words_ratio:
            return Verdict.drop("gopher_non_alpha_words", non_alpha, **signals)
        return Verdict.keep(**signals)
