"""Typed pipeline configuration.

One YAML file (e.g. ``configs/tiny.yaml``) parses into :class:`PipelineConfig`, whose
sections are named after the stages (``crawl:``, ``dedupe:``, ...). The same models are
the Prefect flow's parameters, so the Prefect UI renders them as a form. Every model
forbids unknown keys: a typo fails before any stage runs, naming the key.

The defaults are the embedded, laptop-sized pipeline (a CPU model, Spark ``local[*]``,
MLflow on SQLite): a config file only says what differs.
"""

from __future__ import annotations

import os
import typing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from llm_core.crawl.config import CrawlConfig
from llm_core.dedup.config import DedupeConfig
from llm_core.errors import ConfigError
from llm_core.evaluate.config import EvaluateConfig
from llm_core.filters.config import FilterConfig
from llm_core.freshness import FreshSection
from llm_core.section import Section
from llm_core.spark import SparkConfig
from llm_core.tokenizer.config import TokenizerConfig
from llm_core.train.config import ModelConfig, TrainConfig

__all__ = [
    "STAGES", "CrawlConfig", "DedupeConfig", "EvaluateConfig", "FilterConfig", "ModelConfig", "PipelineConfig",
    "ProjectConfig", "Section", "SparkConfig", "StageName", "TaskSettings", "TasksConfig", "TokenizerConfig",
    "TrainConfig", "load_config", "parse_config", "resolve_data_root",
]
BASE_DIR_ENV = "LLMPIPE_BASE_DIR"


class ProjectConfig(Section):
    name: str = "llmpipe"
    # Every stage output, Prefect's results and the default MLflow store live under here.
    # A relative path is resolved against $LLMPIPE_BASE_DIR, else the directory the run
    # starts in (the CLI's, or a Prefect worker's flow-run directory), once, at the start of a run.
    # An object-store URL (``s3://bucket/prefix``) holds the stage outputs only
    # (llm_core/objectstore.py); the rest lives under ``local_root``.
    data_root: Path | str = Path("data")
    # With an object-store data root: this machine's copies of the outputs it builds or reads,
    # Prefect's results and the default MLflow store (resolved like data_root; on a Spark
    # cluster of several machines, a filesystem they share). Unused with a local data root.
    local_root: Path = Path("data")
    # fsspec options of the object store, e.g. ``{endpoint_url: http://127.0.0.1:9000}`` for
    # MinIO. Credentials come from the environment (AWS_ACCESS_KEY_ID...), never from here.
    storage_options: dict[str, Any] = Field(default_factory=dict)
    # None: SQLite under data_root (or $MLFLOW_TRACKING_URI when set).
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = "llmpipe"
    registered_model_name: str = "llmpipe-gpt"
    # Model selection: a new model takes the "champion" alias if it beats the current one on
    # this evaluate metric, else the "challenger" alias (llm_core/registry.py).
    champion_metric: str = "bits_per_byte"
    champion_higher_is_better: bool = False

    @field_validator("data_root", mode="before")
    @classmethod
    def _path_unless_url(cls, value: Any) -> Any:
        """``s3://bucket/x`` stays a URL; anything else is a path (``Path`` would fold ``//``)."""
        text = str(value)
        if "://" in text and not text.startswith("file://"):
            return text
        return Path(text.removeprefix("file://"))

    @property
    def store_url(self) -> str | None:
        """The object-store URL of the outputs, or None when data_root is a path."""
        return self.data_root if isinstance(self.data_root, str) else None

    @property
    def local_dir(self) -> Path:
        """Where this machine keeps outputs, Prefect's results and the default MLflow store."""
        return self.local_root if isinstance(self.data_root, str) else Path(self.data_root)


class TaskSettings(Section):
    """How the orchestrator runs one stage. Not part of any output key: retrying or timing
    out a stage never changes what it builds."""

    # Retries of transient failures only (network, a killed worker, a lost executor).
    retries: int = Field(0, ge=0, le=10)
    # First retry after this many seconds, then exponential backoff.
    retry_delay_s: float = Field(10.0, ge=0)
    # The stage is stopped after this many seconds (None: no limit); a timeout is not retried.
    timeout_s: float | None = Field(None, gt=0)


# Stages whose failures are often transient (the network, a Spark executor, a killed worker).
DEFAULT_RETRIES = {"crawl": 2, "filter": 2, "train": 1}


class TasksConfig(Section):
    """Per-stage retries and timeouts (``tasks.train.timeout_s: 7200``)."""

    crawl: TaskSettings = TaskSettings(retries=DEFAULT_RETRIES["crawl"])
    dedupe: TaskSettings = TaskSettings()
    filter: TaskSettings = TaskSettings(retries=DEFAULT_RETRIES["filter"])
    tokenizer: TaskSettings = TaskSettings()
    train: TaskSettings = TaskSettings(retries=DEFAULT_RETRIES["train"])
    evaluate: TaskSettings = TaskSettings()

    @model_validator(mode="before")
    @classmethod
    def _keep_stage_defaults(cls, data: Any) -> Any:
        """``tasks.train.timeout_s: 7200`` keeps train's default retries rather than 0."""
        if isinstance(data, dict):
            data = {stage: ({"retries": DEFAULT_RETRIES[stage], **given}
                            if stage in DEFAULT_RETRIES and isinstance(given, dict) else given)
                    for stage, given in data.items()}
        return data


NEXT_TOKEN_METRICS = ("perplexity", "bits_per_byte", "val_tokens_scored", "val_bytes")


class PipelineConfig(Section):
    project: ProjectConfig = Field(default_factory=ProjectConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    crawl: CrawlConfig = Field(default_factory=CrawlConfig)
    dedupe: DedupeConfig = Field(default_factory=DedupeConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    tasks: TasksConfig = Field(default_factory=TasksConfig)

    @model_validator(mode="after")
    def _champion_metric_is_measured(self) -> "PipelineConfig":
        """The evaluate stage measures perplexity and bits per byte for GPTs only: a BERT or T5
        pipeline must pick one of its own metrics, said now rather than after the run."""
        family = self.train.model.family
        if family != "gpt" and self.project.champion_metric in NEXT_TOKEN_METRICS:
            raise ValueError(f"project.champion_metric {self.project.champion_metric} is measured for GPTs only; a "
                             f"{family} model is scored on its objective: use val_loss, or "
                             f"{'mlm_accuracy' if family == 'bert' else 'target_accuracy'} with "
                             "champion_higher_is_better: true")
        return self

    def for_run(self, now: datetime | None = None) -> "PipelineConfig":
        """The config a run actually uses, fixed once at its start: ``data_root`` absolute
        (see :func:`resolve_data_root`) and every ``refresh`` turned into a pinned ``snapshot``,
        so every task of the run, and ``llmpipe status`` before it, computes the same keys."""
        now = now or datetime.now(timezone.utc)
        project = self.project
        updates: dict[str, Any] = {"project": project.model_copy(update={
            "data_root": project.data_root if project.store_url else resolve_data_root(project.data_root),
            "local_root": resolve_data_root(project.local_root)})}
        for name in STAGES:
            section = getattr(self, name)
            if isinstance(section, FreshSection):
                updates[name] = section.resolved(now)
        return self.model_copy(update=updates)


StageName = Literal["crawl", "dedupe", "filter", "tokenizer", "train", "evaluate"]
STAGES: tuple[str, ...] = typing.get_args(StageName)


def resolve_data_root(data_root: Path) -> Path:
    """An absolute data root: a relative one is taken from ``$LLMPIPE_BASE_DIR`` if set,
    else from the current directory. Resolved once per run, so a Prefect worker and the CLI
    started in the same directory (or with the same base) write to the same place."""
    base = Path(os.environ.get(BASE_DIR_ENV) or Path.cwd())
    return (base / Path(data_root).expanduser()).resolve()


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
