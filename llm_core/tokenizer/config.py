"""The tokenizer stage's settings (``tokenizer:`` in the pipeline YAML)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from llm_core.section import Section


class TokenizerConfig(Section):
    kind: Literal["byte_bpe"] = "byte_bpe"
    vocab_size: int = Field(2048, ge=300, le=1_000_000)
    min_frequency: int = Field(2, ge=1)
    # Share of documents held out for validation (split by document, by hash of its id).
    val_fraction: float = Field(0.1, gt=0, lt=1)
    shard_tokens: int = Field(50_000_000, ge=1024)
