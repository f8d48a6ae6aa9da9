"""The six stages, each a named step with its inputs, code version and build function.

A stage's output key depends only on its config section, its inputs' keys and its code
version, so every key of a pipeline is known before anything runs (``llmpipe status``).
``run_stage`` is what a notebook or test calls; Prefect tasks wrap the same call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel

from llm_core import crawl, dedup, evaluate, filters, tokenizer, train
from llm_core.config import STAGES, PipelineConfig
from llm_core.documents import DOCS_DIR
from llm_core.errors import StageError
from llm_core.storage import StageOutput, is_complete, materialize, output_dir, stage_key
from llm_core.tokenizer.train import SHARDS_DIR

Inputs = dict[str, StageOutput]
Build = Callable[[PipelineConfig, Inputs, Path], dict[str, Any]]


@dataclass(frozen=True)
class Stage:
    name: str  # also the config section and the output folder
    inputs: tuple[str, ...]
    code_version: str
    build: Build

    def config(self, config: PipelineConfig) -> BaseModel:
        return getattr(config, self.name)

    def key(self, config: PipelineConfig, input_keys: dict[str, str]) -> str:
        return stage_key(self.name, self.config(config), [input_keys[i] for i in self.inputs], self.code_version)


STAGE_LIST: tuple[Stage, ...] = (
    Stage("crawl", (), crawl.CODE_VERSION, lambda c, i, out: crawl.crawl(c.crawl, out)),
    Stage("dedupe", ("crawl",), dedup.CODE_VERSION,
          lambda c, i, out: dedup.dedupe(c.dedupe, i["crawl"].file(DOCS_DIR), out)),
    Stage("filter", ("dedupe",), filters.CODE_VERSION,
          lambda c, i, out: filters.filter_documents(c.filter, c.spark, i["dedupe"].file(DOCS_DIR), out)),
    Stage("tokenizer", ("filter",), tokenizer.CODE_VERSION,
          lambda c, i, out: tokenizer.build_tokenizer_and_shards(c.tokenizer, i["filter"].file(DOCS_DIR), out)),
    Stage("train", ("tokenizer",), train.CODE_VERSION,
          lambda c, i, out: train.train(c.train, i["tokenizer"].file(SHARDS_DIR), out)),
    Stage("evaluate", ("tokenizer", "train"), evaluate.CODE_VERSION,
          lambda c, i, out: evaluate.evaluate(
              c.evaluate, i["tokenizer"].file(tokenizer.TOKENIZER_FILE), i["tokenizer"].file(SHARDS_DIR),
              i["train"].file(train.MODEL_FILE), out)),
)
STAGES_BY_NAME: dict[str, Stage] = {s.name: s for s in STAGE_LIST}
assert tuple(STAGES_BY_NAME) == STAGES


def get_stage(name: str) -> Stage:
    if name not in STAGES_BY_NAME:
        raise KeyError(f"unknown stage {name!r}; stages are: {', '.join(STAGES)}")
    return STAGES_BY_NAME[name]


def run_stage(name: str, config: PipelineConfig, inputs: Inputs) -> StageOutput:
    """Build the stage's output unless it already exists; return where it is."""
    stage = get_stage(name)
    missing = [i for i in stage.inputs if i not in inputs]
    if missing:
        raise StageError(name, f"missing input(s) {missing}: run those stages first")
    return materialize(
        config.project.data_root, name, stage.config(config), [inputs[i] for i in stage.inputs],
        stage.code_version, lambda out: stage.build(config, inputs, out),
    )


@dataclass(frozen=True)
class PlannedOutput:
    stage: str
    key: str
    path: Path
    complete: bool


def plan(config: PipelineConfig) -> list[PlannedOutput]:
    """Every stage's output key and path for this config, and whether it already exists."""
    keys: dict[str, str] = {}
    planned = []
    for stage in STAGE_LIST:
        keys[stage.name] = stage.key(config, keys)
        path = output_dir(config.project.data_root, stage.name, keys[stage.name])
        planned.append(PlannedOutput(stage.name, keys[stage.name], path, is_complete(path)))
    return planned

