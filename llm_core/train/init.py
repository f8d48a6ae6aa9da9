"""Weights to continue training from: an earlier train output or a registered MLflow model.

``train.init_from`` names either a train output (its folder or its ``model.pt``) or a model
in the MLflow registry (``models:/NAME/VERSION``, ``models:/NAME@ALIAS``). Either way the
weights are written as a plain ``{"config", "state_dict"}`` file the workers load before
DeepSpeed starts, and the parent is recorded (``lineage``) for the train run's tags and the
registered model's. Everything that can be wrong with it (a model that does not exist, a
shape that is not the configured one) fails here, before any worker starts.

An alias is resolved when the stage runs; the output key holds the URI as written, so name
a version (or a train output) to make a run reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llm_core.errors import PipelineError, StageError
from llm_core.models import TransformerConfig
from llm_core.train.config import TrainConfig



@dataclass(frozen=True)
class InitialWeights:
    file: Path  # {"config": TransformerConfig.to_dict(), "state_dict": ...}
    config: dict[str, Any]
    lineage: dict[str, str]

    def check_shape(self, train: TrainConfig, vocab_size: int) -> None:
        m = train.model
        wanted = m.transformer(vocab_size).to_dict()
        saved = TransformerConfig.from_dict(self.config).to_dict()  # older files: the defaults of what they lack
        shape = ("family", "vocab_size", "n_layer", "n_head", "n_embd", "bias", "position", "tie_weights", "nsp")
        differ = {k: (saved[k], wanted[k]) for k in shape if saved[k] != wanted[k]}
        if m.position == "learned" and saved["block_size"] != wanted["block_size"]:
            differ["block_size"] = (saved["block_size"], wanted["block_size"])
        if differ:
            what = ", ".join(f"{k}: {have} there, {want} here" for k, (have, want) in differ.items())
            raise StageError("train", f"train.init_from {self.lineage['init_from']} has another shape than "
                             f"this run's model ({what}); continued training needs the same model and tokenizer")


def local_model_file(init_from: str) -> Path | None:
    """The ``model.pt`` an ``init_from`` path names (None for a registry URI)."""
    from llm_core.registry import MODELS_SCHEME  # imported here: llm_core.train does not load MLflow

    if init_from.startswith(MODELS_SCHEME):
        return None
    path = Path(init_from).expanduser()
    return path / "model.pt" if path.is_dir() else path


def initial_weights(init_from: str, work_dir: Path) -> InitialWeights:
    """Resolve ``init_from`` into a weights file under ``work_dir`` (MLflow must be configured
    for a registry URI: the caller does it)."""
    local = local_model_file(init_from)
    if local is not None:
        if not local.is_file():
            raise StageError("train", f"train.init_from: {local} does not exist (name a train output or its model.pt)")
        saved = torch.load(local, map_location="cpu", weights_only=True)
        return InitialWeights(local, saved["config"], {"init_from": init_from, "parent_model_file": str(local)})
    return _registered(init_from, Path(work_dir))


def _registered(uri: str, work_dir: Path) -> InitialWeights:
    """A registered version's ``model.pt``, downloaded from the registry: no pickle is loaded."""
    from llm_core.registry import download_registered

    try:
        files = download_registered(uri, work_dir / "parent")
    except PipelineError as exc:
        raise StageError("train", f"train.init_from {exc}") from None
    saved = torch.load(files.model_file, map_location="cpu", weights_only=True)
    lineage = {"init_from": uri, "parent_model": files.name, "parent_model_version": str(files.version),
               "parent_run_id": files.run_id}
    return InitialWeights(files.model_file, saved["config"], lineage)
