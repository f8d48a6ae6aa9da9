"""The evaluate stage's settings (``evaluate:`` in the pipeline YAML)."""

from __future__ import annotations

from pydantic import Field

from llm_core.section import Section


class EvaluateConfig(Section):
    batch_size: int = Field(8, ge=1)
    # Cap on validation batches (None: the whole validation split).
    max_batches: int | None = Field(None, ge=1)
    num_samples: int = Field(3, ge=0)
    sample_tokens: int = Field(48, ge=1)
    temperature: float = Field(0.8, gt=0)
    top_k: int = Field(50, ge=1)
    seed: int = 1337
