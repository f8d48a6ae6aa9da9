"""Language ID: fastText lid.176 label and score per document; keep allowed languages above their threshold.

The label is lid.176's (ISO 639-1 where there is one: ``en``, ``de``, ``zh``; ``no`` for
Norwegian Bokmål); ``unknown`` with score 0 for text with nothing the model knows (empty,
emoji, digits, an unseen script). A long document is judged on a bounded sample (start,
middle and end, ``max_chars`` in all; see :mod:`llm_core.filters.langid`). The model file is
shipped with the Spark job (``files``) and loaded once per Python worker, on first use. There
is no ``check_batch``: fasttext-predict's batch call does not return probabilities, and per
document the model takes ~0.1 ms on a sentence, ~1-3 ms on a full sample, so one call per
document costs little.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

import pyarrow as pa
from pydantic import Field

from llm_core.filters.langid import MAX_CHARS, detect_language, model_path
from llm_core.filters.rule import Document, Rule, RuleConfig, Verdict


class LanguageConfig(RuleConfig):
    # Empty: every language is allowed (the label and score are still added).
    languages: list[str] = Field(default_factory=lambda: ["en"])
    # FineWeb keeps English above 0.65 (datatrove's LanguageFilter default).
    threshold: float = Field(0.65, ge=0, le=1)
    # Per-language thresholds that replace ``threshold`` ({hr: 0.4} for a language lid.176
    # confuses with its neighbours, say).
    thresholds: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict)
    # Characters of a document the model is shown (start, middle and end windows beyond that).
    max_chars: int = Field(MAX_CHARS, ge=100)


class LanguageId(Rule):
    name = "language"
    Config = LanguageConfig
    signals: ClassVar = {"lang": pa.string(), "lang_score": pa.float32()}

    def files(self) -> list[Path]:
        return [model_path()]

    def threshold(self, lang: str) -> float:
        return self.config.thresholds.get(lang, self.config.threshold)

    def check(self, doc: Document) -> Verdict:
        lang, score = detect_language(doc.text, self.config.max_chars)
        signals = {"lang": lang, "lang_score": score}
        if self.config.languages and lang not in self.config.languages:
            return Verdict.drop("language_not_allowed", score, **signals)
        if score < self.threshold(lang):
            return Verdict.drop("language_low_confidence", score, **signals)
        return Verdict.keep(**signals)
