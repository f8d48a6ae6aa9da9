"""The six stages in pipeline order, and how to run one.

Each stage package declares its own row (``llm_core.<package>.STAGE``: inputs, build, code
fingerprint, files worth logging); this module only lists them. A stage's output key
depends on its config section, its inputs' keys and its code fingerprint, so every key of a
pipeline is known before anything runs (``llmpipe status``). ``run_stage`` is what a
notebook or test calls; Prefect tasks wrap the same call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llm_core import crawl, dedup, evaluate, filters, tokenizer, train
from llm_core.config import STAGES, PipelineConfig, ProjectConfig
from llm_core.errors import StageError
from llm_core.objectstore import ObjectStore
from llm_core.stage import Inputs, Stage
from llm_core.storage import StageOutput, is_complete, materialize, output_dir

STAGE_LIST: tuple[Stage, ...] = (crawl.STAGE, dedup.STAGE, filters.STAGE, tokenizer.STAGE, train.STAGE, evaluate.STAGE)
STAGES_BY_NAME: dict[str, Stage] = {s.name: s for s in STAGE_LIST}
assert tuple(STAGES_BY_NAME) == STAGES


def get_stage(name: str) -> Stage:
    if name not in STAGES_BY_NAME:
        raise KeyError(f"unknown stage {name!r}; stages are: {', '.join(STAGES)}")
    return STAGES_BY_NAME[name]


def run_stage(name: str, config: PipelineConfig, inputs: Inputs) -> StageOutput:
    """Build the stage's output unless it already exists; return where it is.

    ``config`` should be a run's config (``PipelineConfig.for_run``), as the flow passes it."""
    stage = get_stage(name)
    missing = [i for i in stage.inputs if i not in inputs]
    if missing:
        raise StageError(name, f"missing input(s) {missing}: run those stages first")
    args = (name, stage.config(config), [inputs[i] for i in stage.inputs], stage.code(config),
            lambda out: stage.build(config, inputs, out))
    store = object_store(config.project)
    if store:
        return store.materialize(config.project.local_dir, *args)
    return materialize(Path(config.project.data_root), *args)


def object_store(project: ProjectConfig) -> ObjectStore | None:
    """The object store holding the outputs, or None when the data root is a path."""
    return ObjectStore(project.store_url, project.storage_options) if project.store_url else None


def output_exists(project: ProjectConfig, stage: str, key: str) -> bool:
    """Whether the output is complete where it lives (its marker, on an object store)."""
    store = object_store(project)
    return store.is_complete(stage, key) if store else is_complete(output_dir(Path(project.data_root), stage, key))


def output_location(project: ProjectConfig, stage: str, key: str) -> str:
    """Where a stage's output lives: its object-store URL, or its path under the data root."""
    store = object_store(project)
    return store.address(stage, key) if store else str(output_dir(Path(project.data_root), stage, key))


@dataclass(frozen=True)
class PlannedOutput:
    stage: str
    key: str
    path: str  # output_location: a path, or a URL on an object store
    complete: bool
    code: str  # the stage's source digest (llm_core.fingerprint)


def plan(config: PipelineConfig) -> list[PlannedOutput]:
    """Every stage's output key and path for this (run) config, and whether it already exists."""
    keys: dict[str, str] = {}
    planned = []
    for stage in STAGE_LIST:
        key = keys[stage.name] = stage.key(config, keys)
        planned.append(PlannedOutput(stage.name, key, output_location(config.project, stage.name, key),
                                     output_exists(config.project, stage.name, key), stage.fingerprint()["source"]))
    return planned
