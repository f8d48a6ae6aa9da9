"""The base of every config section: unknown keys are errors, values are immutable.

Each stage package defines its own section next to its code (``llm_core/crawl/config.py``
...), so a stage's code fingerprint covers its own settings and no other stage's."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
