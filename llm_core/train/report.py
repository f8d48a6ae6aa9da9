"""What a finished training run reports (``train_stats.json``): steps, batch, speed, memory,
the ranks' parameter digests, MFU, and its cost measured beside the estimate."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from llm_core.train import cost
from llm_core.train.monitor import METRICS_FILE

if TYPE_CHECKING:
    from llm_core.train.worker import Trainer

def run_stats(trainer: "Trainer", stopped_by: str, exported: int, digests: list, steps_this_attempt: int,
              seconds: float) -> dict[str, Any]:
    """``train_stats.json``: what the run did, how fast, at what cost."""
    config, state = trainer.config, trainer.state
    records = [json.loads(line) for line in (trainer.work_dir / METRICS_FILE).read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    tokens_per_s = steps_this_attempt * trainer.tokens_per_step / max(seconds, 1e-9)
    stats = {
        "steps": state.step,
        "stopped_by": stopped_by,
        "exported_step": exported,
        "world_size": trainer.world,
        "params": trainer.params,
        "micro_batch_size": config.micro_batch_size,
        "grad_accum_steps": trainer.accumulation,
        "global_batch_size": config.micro_batch_size * trainer.accumulation * trainer.world,
        "tokens_per_step": trainer.tokens_per_step,
        "tokens_seen": state.step * trainer.tokens_per_step,
        "final_loss": losses[-1] if losses else None,
        "best_val_loss": state.best_val_loss,
        "best_step": state.best_step,
        "train_s": round(state.train_s, 3),
        "tokens_per_s": round(tokens_per_s, 1),
        "flops_per_token": trainer.flops_per_token,
        "peak_memory_mb": round(trainer.peak_memory_mb(), 1),
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
    c, devices = trainer.config.cost, trainer.world
    power = c.power_w * devices if c.power_w else None
    prices = (c.price_per_kwh, c.price_per_hour * devices if c.price_per_hour is not None else None)
    planned = cost.estimate_run(trainer.config.max_steps * trainer.tokens_per_step, trainer.flops_per_token,
                                tokens_per_s, power, *prices)
    measured = cost.estimate_run(trainer.state.step * trainer.tokens_per_step, trainer.flops_per_token, tokens_per_s,
                                 power, *prices)
    measured["time_s"] = trainer.state.train_s
    if trainer.energy_kwh is not None:
        measured["energy_kwh"] = trainer.energy_kwh
        measured["power_source"] = "nvml"
        if c.price_per_kwh is not None:
            measured["cost"] = trainer.energy_kwh * c.price_per_kwh + (
                trainer.state.train_s / 3600 * prices[1] if prices[1] is not None else 0.0)
    return {"estimate": planned, "measured": measured}
