"""Gopher's repetition heuristics (Rae et al. 2021, appendix A.1.1, table A1): drop documents
that repeat lines, paragraphs or word n-grams, the signature of boilerplate, spam and
generated filler that deduplication across documents does not see.

Semantics follow datatrove's ``GopherRepetitionFilter``: fractions of duplicate lines and
paragraphs by count and by characters; the characters of the most frequent 2-, 3- and 4-gram
(written with single spaces, times its count); the characters of all repeated 5- to 10-grams,
scanning forward and jumping past each repeat so no word is counted twice. Character fractions
divide by the length of the whole text. Words come from :func:`llm_core.filters.text.words`,
so Chinese, Japanese and Thai n-grams are made of real words, not of whole sentences.
Differences: an empty document is kept (no repetition; the word-count rules drop it), and
n-grams are compared by hash, linear in the document's length (a 10 MB page takes seconds).
"""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa
from pydantic import Field, PositiveInt

from llm_core.filters.rule import Document, Rule, RuleConfig, Verdict
from llm_core.filters.text import NGrams, duplicates, lines, paragraphs, words


class GopherRepetitionConfig(RuleConfig):
    # Defaults: Rae et al. 2021, table A1 (datatrove's GopherRepetitionFilter).
    max_dup_line_frac: float = Field(0.3, ge=0, le=1)
    max_dup_para_frac: float = Field(0.3, ge=0, le=1)
    max_dup_line_char_frac: float = Field(0.2, ge=0, le=1)
    max_dup_para_char_frac: float = Field(0.2, ge=0, le=1)
    # n -> the largest share of characters the most frequent n-gram may cover
    max_top_ngram_char_frac: dict[PositiveInt, float] = Field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    # n -> the largest share of characters in repeated n-grams
    max_dup_ngram_char_frac: dict[PositiveInt, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})


TOP_NS = (2, 3, 4)
DUP_NS = (5, 6, 7, 8, 9, 10)


class GopherRepetition(Rule):
    name = "gopher_repetition"
    Config = GopherRepetitionConfig
    signals: ClassVar = {
        "gorep_dup_line_frac": pa.float32(),
        "gorep_dup_line_char_frac": pa.float32(),
        "gorep_dup_para_frac": pa.float32(),
        "gorep_dup_para_char_frac": pa.float32(),
        **{f"gorep_top_{n}gram_char_frac": pa.float32() for n in TOP_NS},
        **{f"gorep_dup_{n}gram_char_frac": pa.float32() for n in DUP_NS},
    }

    def check(self, doc: Document) -> Verdict:
        c, text = self.config, doc.text or ""
        size = len(text) or 1
        s: dict[str, float | None] = dict.fromkeys(self.signals)

        for unit, items in (("para", paragraphs(text)), ("line", lines(text))):  # paragraphs first, as Gopher
            count, chars = duplicates(items)
            by_count, by_chars = f"gorep_dup_{unit}_frac", f"gorep_dup_{unit}_char_frac"
            s[by_count], s[by_chars] = count / len(items), chars / size
            for signal in (by_count, by_chars):
                if s[signal] > getattr(c, "max_" + signal.removeprefix("gorep_")):
                    return Verdict.drop(signal, s[signal], **s)

        # Later n-grams are measured only for documents that passed the earlier ones, as in datatrove:
        # the signals of a dropped document stop at the test that dropped it.
        # A configured n outside 2-10 is tested but has no signal column.
        grams = NGrams(words(text, doc.lang))
        tests = [("top", n, limit, grams.top_chars) for n, limit in sorted(c.max_top_ngram_char_frac.items())]
        tests += [("dup", n, limit, grams.duplicate_chars) for n, limit in sorted(c.max_dup_ngram_char_frac.items())]
        for kind, n, limit, measure in tests:
            value = measure(n) / size
            if f"gorep_{kind}_{n}gram_char_frac" in s:
                s[f"gorep_{kind}_{n}gram_char_frac"] = value
            if value > limit:
                return Verdict.drop(f"gorep_{kind}_{n}gram", value, **s)
        return Verdict.keep(**s)
