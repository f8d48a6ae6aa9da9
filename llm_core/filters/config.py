"""The filter stage's settings (``filter:`` in the pipeline YAML)."""

from __future__ import annotations

from pydantic import Field, model_validator

from llm_core.section import Section


class FilterConfig(Section):
    languages: list[str] = Field(default_factory=lambda: ["en"])
    lang_threshold: float = Field(0.65, ge=0, le=1)
    min_words: int = Field(50, ge=0)
    max_words: int = Field(100_000, ge=1)
    # Share of words made only of symbols / digits (Gopher's "non-alpha words" idea).
    max_non_alpha_words_ratio: float = Field(0.5, ge=0, le=1)
    min_mean_word_length: float = Field(2.0, ge=0)
    max_mean_word_length: float = Field(12.0, gt=0)

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> "FilterConfig":
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) exceeds max_words ({self.max_words})")
        if self.min_mean_word_length > self.max_mean_word_length:
            raise ValueError(f"min_mean_word_length ({self.min_mean_word_length}) exceeds "
                             f"max_mean_word_length ({self.max_mean_word_length})")
        return self
