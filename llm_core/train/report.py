"""What a finished training run reports (``train_stats.json``): steps, batch, speed, memory,
the ranks' parameter digests, MFU, and its cost measured beside the estimate."""

from __future__ import annotations

import json
import resource
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from llm_core.train import cost
from llm_core.train.lamb import Lamb, lamb_trust_ratios
from llm_core.train.monitor import METRICS_FILE

if TYPE_CHECKING:
    from llm_core.train.worker import Trainer


def run_stats(trainer: "Trainer", stopped_by: str, exported: int, digests: list, steps_this_attempt: int,
              seconds: float) -> dict[str, Any]:
    """``train_stats.json``: what the run did, how fast, at what cost."""
    config, state = trainer.config, trainer.state
    records = [json.loads(line) for line in (trainer.work_dir / METRICS_FILE).read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    accuracies = [r["val_accuracy"] for r in records if "val_accuracy" in r]
    tokens_per_s = steps_this_attempt * trainer.tokens_per_step / max(seconds, 1e-9)
    stats = {
        "family": config.model.family,
        "steps": state.step,
        "stopped_by": stopped_by,
        "exported_step": exported,
        "world_size": trainer.world,
        "params": trainer.params,
        "micro_batch_size": config.micro_batch_size,
        "grad_accum_steps": trainer.accumulation,
        "global_batch_size": trainer.tokens_per_step // config.model.block_size,
        "tokens_per_step": trainer.tokens_per_step,
        "tokens_seen": state.step * trainer.tokens_per_step,
        "final_loss": losses[-1] if losses else None,
        "best_val_loss": state.best_val_loss,
        "best_step": state.best_step,
        "final_val_accuracy": accuracies[-1] if accuracies else None,  # GPT next token, BERT masked, T5 target
        "train_s": round(state.train_s, 3),
        "tokens_per_s": round(tokens_per_s, 1),
        "flops_per_token": trainer.flops_per_token,
        "peak_memory_mb": round(peak_memory_mb(trainer.cuda), 1),
        "skipped_batches": state.skipped_batches,
        "rollbacks": state.rollbacks,
        "resumed_from_steps": state.resumed_from,
        "replica_digests": digests,
        "device": str(trainer.device),
        "logged_live": trainer.monitor.logged_live,
    }
    if trainer.peak_tflops:
        stats["mfu"] = round(cost.mfu(tokens_per_s, trainer.flops_per_token, trainer.peak_tflops, trainer.world), 4)
    stats["cost"] = cost_figures(trainer, tokens_per_s)
    return stats


def cost_figures(trainer: "Trainer", tokens_per_s: float) -> dict[str, Any]:
    """What this run measured (time, energy: NVML where the GPUs report it, else the
    configured power; money) beside the whole configured run at this run's throughput
    (``estimate``: what ``max_steps`` would take, when a time budget or early stopping cut
    the run short). The launcher adds the estimate made before the run (``before_run``)."""
    c, state = trainer.config.cost, trainer.state
    inputs = c.for_devices(trainer.world)
    planned = cost.estimate_run(trainer.config.max_steps * trainer.tokens_per_step, trainer.flops_per_token,
                                tokens_per_s, *inputs)
    tokens = state.step * trainer.tokens_per_step
    measured = cost.estimate_run(tokens, trainer.flops_per_token, tokens / max(state.train_s, 1e-9), *inputs)
    if trainer.energy_kwh is not None:  # measured by NVML: the cost follows the measurement
        measured.update(energy_kwh=trainer.energy_kwh, power_source="nvml")
        if c.price_per_kwh is not None:
            hours = state.train_s / 3600
            measured["cost"] = trainer.energy_kwh * c.price_per_kwh + (hours * inputs[2] if inputs[2] is not None else 0)
    return {"estimate": planned, "measured": measured}


def train_figures(trainer: "Trainer", window: list[float], steps: int, seconds: float) -> dict[str, float]:
    tokens_per_s = steps * trainer.tokens_per_step / max(seconds, 1e-9)
    figures = {
        "loss": float(np.mean(window)) if window else float("nan"),
        "lr": trainer.engine.get_lr()[0],
        "grad_norm": float(trainer.last_grad_norm) if trainer.last_grad_norm is not None else float("nan"),
        "tokens_per_s": tokens_per_s,
        "peak_memory_mb": peak_memory_mb(trainer.cuda),
    }
    if trainer.config.precision == "fp16":
        figures["loss_scale"] = float(trainer.engine.optimizer.loss_scale)
    lamb = getattr(trainer.engine.optimizer, "optimizer", trainer.engine.optimizer)
    if isinstance(lamb, Lamb) and lamb_trust_ratios(lamb):
        figures["lamb_trust_ratio"] = float(np.mean(lamb_trust_ratios(lamb)))
    if trainer.peak_tflops:
        figures["mfu"] = cost.mfu(tokens_per_s, trainer.flops_per_token, trainer.peak_tflops, trainer.world)
    return figures


def peak_memory_mb(cuda: bool) -> float:
    """This process's peak: the GPU's allocated memory, or on CPU the resident set size."""
    if cuda:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
