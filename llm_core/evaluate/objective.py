"""Evaluation of BERT and T5 on the held-out split, with the objective they were trained on.

Perplexity and bits per byte are next-token measures: they mean nothing for a masked LM or a
span-corruption model. These families are scored on ``max_batches`` (default 32) batches of
the validation split, drawn with the evaluation seed so two models see the same masks and spans:

- BERT: ``mlm_loss`` and ``mlm_accuracy`` over the masked tokens; ``nsp_accuracy`` when the
  model has a next-sentence head; ``val_loss`` their training loss (masked LM + NSP).
- T5: ``val_loss`` (the span-corruption cross-entropy) and ``target_accuracy`` over the target's tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from llm_core.evaluate.config import EvaluateConfig
from llm_core.models.block import cross_entropy
from llm_core.tokenizer.shards import TokenShards
from llm_core.train.objectives import accuracy, objective_for

DEFAULT_BATCHES = 32


@torch.no_grad()
def score_objective(model, shards_dir: Path, config: EvaluateConfig) -> dict[str, Any]:
    m = model.config
    objective = objective_for(m.family, m.block_size, shards_dir, m.nsp)
    val, rng = TokenShards(shards_dir, "val"), np.random.default_rng(config.seed)
    device = next(model.parameters()).device
    batches = config.max_batches or DEFAULT_BATCHES
    total_loss = target_loss = right = scored = nsp_right = examples = 0.0
    for _ in range(batches):
        batch = {k: t.to(device) for k, t in objective.batch(val, rng, config.batch_size).items()}
        if "nsp_labels" in batch:  # BERT's two heads, from one encoding
            logits, loss, nsp_logits = model.heads(model.encode(batch["idx"], batch["segments"]), batch["targets"],
                                                   batch["nsp_labels"])
            nsp_right += (nsp_logits.argmax(-1) == batch["nsp_labels"]).sum().item()
        else:
            logits, loss = model(**batch)
        total_loss += loss.item()
        target_loss += cross_entropy(logits, batch["targets"]).item()
        r, s = accuracy(logits, batch["targets"])
        right, scored = right + r, scored + s
        examples += len(batch["idx"])
    metrics: dict[str, Any] = {"val_loss": round(total_loss / batches, 5)}
    if m.family == "bert":
        metrics["mlm_loss"] = round(target_loss / batches, 5)
        metrics["mlm_accuracy"] = round(right / scored, 5)
        if m.nsp:
            metrics["nsp_accuracy"] = round(nsp_right / examples, 5)
    else:
        metrics["target_accuracy"] = round(right / scored, 5)
    metrics.update({"val_examples": int(examples), "val_tokens_scored": int(scored), "val_tokens": val.tokens,
                    "params": model.num_params()})
    return metrics



