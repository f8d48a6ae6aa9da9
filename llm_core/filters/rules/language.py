"""Language ID: fastText lid.176 label and score per document; keep allowed languages above their threshold."""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa
from pydantic import Field

from llm_core.filters.langid import detect_language
from llm_core.filters.rule import Document, Rule, RuleConfig, Verdict


class LanguageConfig(RuleConfig):
    # Empty: every language is allowed (the label and score are still added).
    languages: list[str] = Field(default_factory=lambda: ["en"])
    # FineWeb keeps English above 0.65 (datatrove's LanguageFilter default).
    threshold: float = Field(0.65, ge=0, le=1)


class LanguageId(Rule):
    name = "language"
    Config = LanguageConfig
    signals: ClassVar = {"lang": pa.string(), "lang_score": pa.float32()}

    def check(self, doc: Document) -> Verdict:
        lang, score = detect_language(doc.text)
        signals = {"lang": lang, "lang_score": score}
        if self.config.languages and lang not in self.config.languages:
            return Verdict.drop("language_not_allowed", score, **signals)
        if score < self.config.threshold:
            return Verdict.drop("language_low_confidence", score, **signals)
        return Verdict.keep(**signals)
