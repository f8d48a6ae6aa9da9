"""The evaluate stage's settings (``evaluate:`` in the pipeline YAML)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from llm_core.section import Section


class EvalDataset(Section):
    """An external text set scored with rolling windows (llm_core.evaluate.rolling).

    Its file's content enters the stage's key (the STAGE row's ``input_files``), so an
    edited file is scored again."""

    # The key under ``datasets.`` in the stats and the report: a metric-name-safe word.
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    path: str
    # "auto": by the suffix (.jsonl / .ndjson: JSON lines, .parquet: Parquet, else UTF-8 text).
    format: Literal["auto", "text", "jsonl", "parquet"] = "auto"
    # The string column (Parquet) or key (JSON lines) that holds each document's text.
    text_field: str = "text"
    # Text files only: the whole file is one document ("file", the default: long-context
    # scoring as lm-eval does for wikitext's documents), or one document per blank-line-
    # separated paragraph ("paragraphs").
    split: Literal["file", "paragraphs"] = "file"
    # Tokens newly scored per window after a document's first (None: the model's block size,
    # disjoint windows, lm-eval's loglikelihood_rolling). Smaller: more context per token, more compute.
    stride: int | None = Field(None, ge=1)
    # The first documents only (None: all).
    max_docs: int | None = Field(None, ge=1)


class ContinuationConfig(Section):
    """Prompt with the start of a passage, compare the greedy continuation with the rest."""

    num_docs: int = Field(20, ge=0)  # passages; 0 turns the task off
    prompt_fraction: float = Field(0.5, gt=0, lt=1)
    max_new_tokens: int = Field(32, ge=1)


class ChoiceTask(Section):
    """A multiple-choice task scored by log-likelihood as lm-eval scores it (llm_core.evaluate.choice):
    JSON lines of {"query": str, "choices": [str, ...], "gold": int}. Its file's content enters the stage's key."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    path: str


class EvaluateConfig(Section):
    batch_size: int = Field(8, ge=1)
    # Cap on validation batches (None: the whole validation split).
    max_batches: int | None = Field(None, ge=1)
    num_samples: int = Field(3, ge=0)
    sample_tokens: int = Field(48, ge=1)
    temperature: float = Field(0.8, gt=0)
    top_k: int = Field(50, ge=1)
    # Nucleus sampling: draw from the fewest most likely tokens holding this much probability (1.0: off).
    top_p: float = Field(1.0, gt=0, le=1)
    # Samples take the most likely token each step (temperature, top_k, top_p then do nothing).
    greedy: bool = False
    seed: int = 1337
    # Prompts to sample from (each once, in the report and MLflow); none: num_samples prompts
    # of PROMPT_TOKENS tokens taken from the validation split.
    prompts: list[str] = Field(default_factory=list)
    datasets: list[EvalDataset] = Field(default_factory=list)
    continuation: ContinuationConfig = Field(default_factory=ContinuationConfig)
    # Multiple-choice tasks: acc and acc_norm under choice.<name> (llm_core.evaluate.choice).
    choice_tasks: list[ChoiceTask] = Field(default_factory=list)

    @field_validator("datasets", "choice_tasks")
    @classmethod
    def _unique_names(cls, items: list[EvalDataset] | list[ChoiceTask]) -> list:
        names = [d.name for d in items]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"names must be unique; repeated: {', '.join(repeated)}")
        return items
