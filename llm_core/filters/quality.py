"""Document quality rules in the style of Gopher / C4 / FineWeb.

Each rule reads the document's signals and returns the reason it drops the document, or
None. The thresholds come from :class:`FilterConfig`; their defaults are the published ones
where one exists (Gopher: 50-100k words, mean word length 3-10 characters, >=80% of words
with an alphabetic character), loosened a little for the small pages of the demo.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llm_core.filters.config import FilterConfig

_HAS_ALPHA = re.compile(r"[^\W\d_]", re.UNICODE)


@dataclass(frozen=True)
class QualitySignals:
    words: int
    non_alpha_words_ratio: float
    mean_word_length: float


def quality_signals(text: str) -> QualitySignals:
    words = text.split()
    if not words:
        return QualitySignals(0, 1.0, 0.0)
    non_alpha = sum(1 for w in words if not _HAS_ALPHA.search(w))
    return QualitySignals(
        words=len(words),
        non_alpha_words_ratio=non_alpha / len(words),
        mean_word_length=sum(len(w) for w in words) / len(words),
    )


def quality_reason(signals: QualitySignals, config: FilterConfig) -> str | None:
    if signals.words < config.min_words:
        return "too_few_words"
    if signals.words > config.max_words:
        return "too_many_words"
    if signals.non_alpha_words_ratio > config.max_non_alpha_words_ratio:
        return "non_alpha_words"
    if not config.min_mean_word_length <= signals.mean_word_length <= config.max_mean_word_length:
        return "mean_word_length"
    return None


def language_reason(lang: str, score: float, config: FilterConfig) -> str | None:
    if config.languages and lang not in config.languages:
        return "language_not_allowed"
    if score < config.lang_threshold:
        return "language_low_confidence"
    return None
