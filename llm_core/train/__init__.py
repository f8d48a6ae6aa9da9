"""Train stage: a GPT, BERT or T5 trained with DeepSpeed ZeRO, launched as ``torchrun`` worker processes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_core.stage import Inputs, Stage
from llm_core.storage import work_dir
from llm_core.tokenizer.train import SHARDS_DIR
from llm_core.train.ds_config import FLOPS_PROFILE_FILE
from llm_core.train.init import initial_weights, local_model_file
from llm_core.models import load_model
from llm_core.train.launch import SCHEDULE_PLOT, train
from llm_core.train.monitor import METRICS_FILE
from llm_core.train.worker import MODEL_FILE, TENSORBOARD_DIR, TRACE_FILE, TRAIN_STATS_FILE

if TYPE_CHECKING:
    from llm_core.config import PipelineConfig, TrainConfig


def build(config: "PipelineConfig", inputs: Inputs, out: Path) -> dict[str, Any]:
    """Checkpoints live in the output's work folder, where a retry or a rerun resumes from them."""
    work = work_dir(out)
    init = None
    if config.train.init_from:
        from llm_core import tracking

        tracking.configure(config.project)  # a registered model is looked up in this project's registry
        init = initial_weights(config.train.init_from, work)
    return train(config.train, inputs["tokenizer"].file(SHARDS_DIR), out, work, init)


def init_files(config: "TrainConfig") -> list[Path]:
    """A train output named by ``init_from``: its weights enter the key (a registry URI names
    an immutable version, or an alias: see llm_core.train.init)."""
    local = local_model_file(config.init_from) if config.init_from else None
    return [local] if local is not None else []


STAGE = Stage(
    "train", package=__name__, inputs=("tokenizer",),
    build=build,
    libraries=("torch", "deepspeed"),
    input_files=init_files,
    artifacts=(TRAIN_STATS_FILE, SCHEDULE_PLOT, TENSORBOARD_DIR, FLOPS_PROFILE_FILE, TRACE_FILE),
    history_file=METRICS_FILE,
)

__all__ = ["MODEL_FILE", "STAGE", "load_model", "train"]
