"""Gopher's quality heuristics (Rae et al. 2021, "Scaling Language Models", appendix A.1.1):
drop documents that are too short or too long, made of implausible words, of hashes and
ellipses, of bullet lists, of words without letters, or (English) without stop words.

Semantics follow datatrove's ``GopherQualityFilter`` with these deliberate changes, so that
the rule means the same thing in every language:

- words come from :func:`llm_core.filters.text.words`, which cuts Chinese, Japanese and Thai
  with real segmenters; without it a page of Chinese is one "word" and always "too short";
- the mean word length range (3-10 characters, measured on English) is not applied to the
  languages listed in ``mean_word_length_exempt`` (by default Chinese and Japanese, whose
  words are 1-2 characters, and Korean, whose space-separated words are ~3 syllables); the
  signal is still recorded;
- a word "with an alphabetic character" is a space-separated word as in the paper, punctuation
  attached (``said,``), not a tokenizer's punctuation token: datatrove's NLTK tokens make
  commas count as words without letters and drop half of the Lithuanian or Kazakh prose; in
  Chinese and Japanese the segmenter's words with their punctuation play that part;
- the stop-word test (>= 2 of the, be, to, of, and, that, have, with) runs only for documents
  whose language (``doc.lang``) has a list in ``stop_words``; by default that is English only.

Word counts and mean length count words, not punctuation tokens (as datatrove); the symbol
ratios divide by that count; bullet and ellipsis line ratios count non-blank lines.
"""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa
from pydantic import Field

from llm_core.filters.rule import Document, Rule, RuleConfig, Verdict
from llm_core.filters.text import has_alpha, is_word, nonblank_lines, spaceless_language, words_and_spaced

# Gopher's stop words (paper, A.1.1; datatrove's STOP_WORDS).
ENGLISH_STOP_WORDS = ["the", "be", "to", "of", "and", "that", "have", "with"]
BULLETS = ("•", "-", "*", "‣", "◦", "▪", "●", "·")  # datatrove checks "•" and "-"
ELLIPSES = ("...", "…")


class GopherQualityConfig(RuleConfig):
    # Defaults: Rae et al. 2021, A.1.1, and datatrove's GopherQualityFilter.
    min_words: int = Field(50, ge=0)
    max_words: int = Field(100_000, ge=1)
    min_mean_word_length: float = Field(3.0, ge=0)
    max_mean_word_length: float = Field(10.0, gt=0)
    # Languages whose word length the 3-10 range does not describe (see the module docstring).
    mean_word_length_exempt: list[str] = Field(default_factory=lambda: ["zh", "ja", "ko"])
    # "#" and ellipses ("..." or "…"), each, per word.
    max_symbol_word_ratio: float = Field(0.1, ge=0)
    max_bullet_lines_ratio: float = Field(0.9, ge=0, le=1)
    max_ellipsis_lines_ratio: float = Field(0.3, ge=0, le=1)
    # Gopher keeps documents where >= 80% of words have an alphabetic character.
    max_non_alpha_words_ratio: float = Field(0.2, ge=0, le=1)
    min_stop_words: int = Field(2, ge=0)
    stop_words: dict[str, list[str]] = Field(default_factory=lambda: {"en": list(ENGLISH_STOP_WORDS)})


def _ratio(count: int, total: int) -> float:
    return count / total if total else 0.0


class GopherQuality(Rule):
    name = "gopher_quality"
    Config = GopherQualityConfig
    signals: ClassVar = {
        "gopher_words": pa.int32(),
        "gopher_mean_word_length": pa.float32(),
        "gopher_hash_ratio": pa.float32(),
        "gopher_ellipsis_ratio": pa.float32(),
        "gopher_bullet_lines_ratio": pa.float32(),
        "gopher_ellipsis_lines_ratio": pa.float32(),
        "gopher_non_alpha_words_ratio": pa.float32(),
        "gopher_stop_words": pa.int32(),  # null where the language has no stop-word list
    }

    def check(self, doc: Document) -> Verdict:
        c, text = self.config, doc.text or ""
        lang = (doc.lang or "").lower() or None
        tokens, spaced_words = words_and_spaced(text, lang)
        words = [t for t in tokens if is_word(t)]
        n = len(words)
        mean_length = sum(map(len, words)) / n if n else 0.0
        lines = nonblank_lines(text)
        stop_words = c.stop_words.get(lang or "")
        s = {
            "gopher_words": n,
            "gopher_mean_word_length": mean_length,
            "gopher_hash_ratio": _ratio(text.count("#"), n),
            "gopher_ellipsis_ratio": _ratio(text.count("...") + text.count("…"), n),
            "gopher_bullet_lines_ratio": _ratio(sum(line.lstrip().startswith(BULLETS) for line in lines), len(lines)),
            "gopher_ellipsis_lines_ratio": _ratio(sum(line.rstrip().endswith(ELLIPSES) for line in lines), len(lines)),
            "gopher_non_alpha_words_ratio": 1 - _ratio(sum(map(has_alpha, spaced_words)), len(spaced_words)),
            "gopher_stop_words": (len(set(stop_words) & {t.lower() for t in set(words)}) if stop_words is not None
                                  else None),
        }
        if n < c.min_words:
            return Verdict.drop("gopher_too_few_words", n, **s)
        if n > c.max_words:
            return Verdict.drop("gopher_too_many_words", n, **s)
        exempt = {lang, spaceless_language(text, lang)} & set(c.mean_word_length_exempt)
        if not exempt and mean_length < c.min_mean_word_length:
            return Verdict.drop("gopher_mean_word_length_low", mean_length, **s)
        if not exempt and mean_length > c.max_mean_word_length:
            return Verdict.drop("gopher_mean_word_length_high", mean_length, **s)
        for key, reason in (("gopher_hash_ratio", "gopher_too_many_hashes"),
                            ("gopher_ellipsis_ratio", "gopher_too_many_ellipses")):
            if s[key] > c.max_symbol_word_ratio:
                return Verdict.drop(reason, s[key], **s)
        if s["gopher_bullet_lines_ratio"] > c.max_bullet_lines_ratio:
            return Verdict.drop("gopher_too_many_bullet_lines", s["gopher_bullet_lines_ratio"], **s)
        if s["gopher_ellipsis_lines_ratio"] > c.max_ellipsis_lines_ratio:
            return Verdict.drop("gopher_too_many_ellipsis_lines", s["gopher_ellipsis_lines_ratio"], **s)
        if s["gopher_non_alpha_words_ratio"] > c.max_non_alpha_words_ratio:
            return Verdict.drop("gopher_non_alpha_words", s["gopher_non_alpha_words_ratio"], **s)
        if stop_words is not None and s["gopher_stop_words"] < c.min_stop_words:
            return Verdict.drop("gopher_few_stop_words", s["gopher_stop_words"], **s)
        return Verdict.keep(**s)
