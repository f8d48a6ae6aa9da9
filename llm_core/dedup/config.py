"""The dedupe stage's settings (``dedupe:`` in the pipeline YAML)."""

from __future__ import annotations

from pydantic import Field, model_validator

from llm_core.section import Section


class DedupeConfig(Section):
    exact: bool = True
    near: bool = True
    # Estimated Jaccard similarity of word shingles above which two documents are near-duplicates.
    threshold: float = Field(0.8, gt=0, le=1)
    num_perm: int = Field(128, ge=16)
    shingle_size: int = Field(5, ge=1)
    seed: int = 1
