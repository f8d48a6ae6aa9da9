"""FineWeb's own quality heuristics (Penedo et al. 2024, "The FineWeb Datasets", section 3.3.4),
chosen because they remove what Gopher and C4 leave: pages of lines without sentence ends,
pages of short lines (menus, lists, tables), pages that repeat lines, and lists with one
item per line.

Semantics follow datatrove's ``FineWebQualityFilter``: ratios over the non-blank lines of the
text split on ``\\n``; a line ends in punctuation when its last character is a sentence
terminal of any script (Unicode's Sentence_Terminal, which datatrove's TERMINAL_PUNCTUATION
lists), trailing spaces aside; the duplicate-line ratio divides the characters of lines
that repeat an earlier one by the text's characters without newlines; the list ratio divides
newlines by words (punctuation tokens included, as datatrove's tokenizers count them). Words
come from :func:`llm_core.filters.text.words`, so a Chinese or Japanese page is not one
"word" with too many newlines. A text with no non-blank line is dropped (``fineweb_empty``).
"""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa
from pydantic import Field

from llm_core.filters.rule import Document, Rule, RuleConfig, Verdict
from llm_core.filters.text import DENSE, duplicates, ends_sentence, words


class FineWebConfig(RuleConfig):
    # Defaults: datatrove's FineWebQualityFilter, as used to build FineWeb.
    min_line_punct_ratio: float = Field(0.12, ge=0, le=1)
    line_punct_exclude_zero: bool = False  # True: a text with no punctuated line passes this test
    short_line_length: int = Field(30, ge=0)  # characters
    # A Chinese or Japanese character counts as this many (they carry ~3 Latin letters' worth of text).
    dense_char_width: float = Field(3.0, ge=1)
    max_short_line_ratio: float = Field(0.67, ge=0, le=1)
    max_char_dup_ratio: float = Field(0.01, ge=0, le=1)
    max_newline_word_ratio: float = Field(0.3, ge=0)


class FineWeb(Rule):
    name = "fineweb"
    Config = FineWebConfig
    signals: ClassVar = {
        "fineweb_line_punct_ratio": pa.float32(),
        "fineweb_short_line_ratio": pa.float32(),
        "fineweb_char_dup_ratio": pa.float32(),
        "fineweb_newline_word_ratio": pa.float32(),
    }

    def _short(self, line: str) -> bool:
        if len(line) > self.config.short_line_length:
            return False
        dense = len(DENSE.findall(line))
        return len(line) + (self.config.dense_char_width - 1) * dense <= self.config.short_line_length

    def check(self, doc: Document) -> Verdict:
        c, text = self.config, doc.text or ""
        lines = [line for line in text.split("\n") if line.strip()]
        if not lines:
            return Verdict.drop("fineweb_empty", 0)
        s = {
            "fineweb_line_punct_ratio": sum(map(ends_sentence, lines)) / len(lines),
            "fineweb_short_line_ratio": sum(self._short(line) for line in lines) / len(lines),
            "fineweb_char_dup_ratio": duplicates(lines)[1] / (len(text) - text.count("\n")),
            "fineweb_newline_word_ratio": text.count("\n") / max(len(words(text, doc.lang)), 1),
        }
        punct = s["fineweb_line_punct_ratio"]
        if punct < c.min_line_punct_ratio and not (punct == 0 and c.line_punct_exclude_zero):
            return Verdict.drop("fineweb_line_punct_ratio", punct, **s)
        if s["fineweb_short_line_ratio"] > c.max_short_line_ratio:
            return Verdict.drop("fineweb_short_line_ratio", s["fineweb_short_line_ratio"], **s)
        if s["fineweb_char_dup_ratio"] > c.max_char_dup_ratio:
            return Verdict.drop("fineweb_char_dup_ratio", s["fineweb_char_dup_ratio"], **s)
        if s["fineweb_newline_word_ratio"] > c.max_newline_word_ratio:
            return Verdict.drop("fineweb_newline_word_ratio", s["fineweb_newline_word_ratio"], **s)
        return Verdict.keep(**s)
