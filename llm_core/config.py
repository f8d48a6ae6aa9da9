"""Typed pipeline configuration.

One YAML file (e.g. ``configs/tiny.yaml``) parses into :class:`PipelineConfig`, whose
sections are named after the stages (``crawl:``, ``dedupe:``, ...). The same models are
the Prefect flow's parameters, so the Prefect UI renders them as a form. Every model
forbids unknown keys: a typo fails before any stage runs, naming the key.

The defaults are the embedded, laptop-sized pipeline (a CPU model, Spark ``local[*]``,
MLflow on SQLite): a config file only says what differs.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llm_core.errors import ConfigError


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectConfig(Section):
    name: str = "llmpipe"
    # Every stage output, Prefect's results and the default MLflow store live under here.
    data_root: Path = Path("data")
    # None: SQLite under data_root (or $MLFLOW_TRACKING_URI when set).
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = "llmpipe"
    registered_model_name: str = "llmpipe-gpt"


class SparkConfig(Section):
    """Engine settings: they change where the filter runs, never what it outputs,
    so they are not part of any stage's output key."""

    master: str = "local[*]"
    app_name: str = "llmpipe"
    conf: dict[str, str] = Field(default_factory=dict)


class CrawlConfig(Section):
    seeds: list[str] = Field(default_factory=list)
    max_pages: int = Field(100, ge=1)
    max_depth: int = Field(3, ge=0)
    same_host: bool = True
    timeout_s: float = Field(10.0, gt=0)
    max_page_bytes: int = Field(2_000_000, ge=1024)
    # Pause between two requests to the same host (politeness).
    delay_s: float = Field(0.0, ge=0)
    user_agent: str = "llmpipe/0.1 (+https://github.com/llmpipe/llmpipe)"
    # Pages whose extracted text is shorter than this are not kept as documents.
    min_text_chars: int = Field(200, ge=0)

    @model_validator(mode="after")
    def _seeds_are_http(self) -> "CrawlConfig":
        for seed in self.seeds:
            if not seed.startswith(("http://", "https://")):
                raise ValueError(f"seed {seed!r} is not an http(s) URL")
        return self


class DedupeConfig(Section):
    exact: bool = True
    near: bool = True
    # Estimated Jaccard similarity of word shingles above which two documents are near-duplicates.
    threshold: float = Field(0.8, gt=0, le=1)
    num_perm: int = Field(128, ge=16)
    shingle_size: int = Field(5, ge=1)
    seed: int = 1


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


class TokenizerConfig(Section):
    kind: Literal["byte_bpe"] = "byte_bpe"
    vocab_size: int = Field(2048, ge=300, le=1_000_000)
    min_frequency: int = Field(2, ge=1)
    # Share of documents held out for validation (split by document, by hash of its id).
    val_fraction: float = Field(0.1, gt=0, lt=1)
    shard_tokens: int = Field(50_000_000, ge=1024)


class ModelConfig(Section):
    n_layer: int = Field(2, ge=1)
    n_head: int = Field(4, ge=1)
    n_embd: int = Field(128, ge=8)
    block_size: int = Field(128, ge=8)
    dropout: float = Field(0.0, ge=0, lt=1)
    bias: bool = False

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "ModelConfig":
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        return self


class TrainConfig(Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    zero_stage: int = Field(2, ge=0, le=3)
    offload_optimizer: bool = False
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    micro_batch_size: int = Field(8, ge=1)
    grad_accum_steps: int = Field(2, ge=1)
    max_steps: int = Field(200, ge=1)
    lr: float = Field(1e-3, gt=0)
    min_lr: float = Field(1e-4, ge=0)
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = Field(1.0, ge=0)
    seed: int = 1337
    log_every: int = Field(10, ge=1)
    # Processes on this node (CPU: gloo; GPU: one per device, NCCL).
    nproc_per_node: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _schedule_is_consistent(self) -> "TrainConfig":
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) exceeds max_steps ({self.max_steps})")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("offload_optimizer needs zero_stage 1, 2 or 3")
        return self


class EvaluateConfig(Section):
    batch_size: int = Field(8, ge=1)
    # Cap on validation batches (None: the whole validation split).
    max_batches: int | None = Field(None, ge=1)
    num_samples: int = Field(3, ge=0)
    sample_tokens: int = Field(48, ge=1)
    temperature: float = Field(0.8, gt=0)
    top_k: int = Field(50, ge=1)
    seed: int = 1337


class PipelineConfig(Section):
    project: ProjectConfig = Field(default_factory=ProjectConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    crawl: CrawlConfig = Field(default_factory=CrawlConfig)
    dedupe: DedupeConfig = Field(default_factory=DedupeConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)


StageName = Literal["crawl", "dedupe", "filter", "tokenizer", "train", "evaluate"]
STAGES: tuple[str, ...] = typing.get_args(StageName)


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides; values are parsed as YAML (``4096``, ``true``, ``[a, b]``)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[leaf] = yaml.safe_load(raw)
    return tree


def parse_config(tree: dict[str, Any], source: str = "config") -> PipelineConfig:
    """Validate a config tree; errors name every bad key and why."""
    try:
        return PipelineConfig.model_validate(tree)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid {source}: {problems}") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {str(path)!r} must be a mapping of sections")
    return parse_config(apply_overrides(tree, list(overrides or [])), source=str(path))
