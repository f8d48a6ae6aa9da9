"""The model families, all built from one transformer block (:mod:`llm_core.models.block`)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from llm_core.models.bert import BERT
from llm_core.models.config import FAMILIES, TransformerConfig
from llm_core.models.gpt import GPT
from llm_core.models.t5 import T5

MODEL_CLASSES: dict[str, type[nn.Module]] = {"gpt": GPT, "bert": BERT, "t5": T5}
assert set(MODEL_CLASSES) == set(FAMILIES)


def build_model(config: TransformerConfig) -> nn.Module:
    """A freshly initialised model of ``config.family``."""
    return MODEL_CLASSES[config.family](config)


def load_model(model_file: Path, device: str = "cpu") -> nn.Module:
    """A ``model.pt`` (``{"config", "state_dict"}``, as the train stage writes it), in eval mode."""
    saved = torch.load(model_file, map_location=device, weights_only=True)
    try:
        model = build_model(TransformerConfig.from_dict(saved["config"]))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{model_file}: {exc}") from None
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval()


__all__ = ["BERT", "GPT", "MODEL_CLASSES", "T5", "TransformerConfig", "build_model", "load_model"]
