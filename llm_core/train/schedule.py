"""Learning-rate schedules: linear warmup, then cosine, linear, constant or warmup-stable-decay.

One function, :func:`lr_at`, is the schedule: the trainer wraps it in a ``LambdaLR`` that
DeepSpeed steps at each optimizer step (and saves in its checkpoints), the run plots it, and
the benchmark's plain PyTorch loop calls it. DeepSpeed's own schedulers are not used: they
have no warmup-stable-decay, and two implementations of one schedule would drift apart.

Warmup-stable-decay (MiniCPM, Hu et al. 2024; DeepSeek LLM): hold the peak rate, then decay
linearly to ``min_lr`` over the last ``decay_fraction`` of the steps, so a run can be
extended (or branched from its stable phase) without restarting the schedule.
"""

from __future__ import annotations

import math

from llm_core.train.config import TrainConfig


def lr_at(step: int, config: TrainConfig) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of ``config.max_steps``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    floor = config.min_lr
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "wsd":
        decay_steps = max(1, round(config.decay_fraction * config.max_steps))
        decay_start = max(config.warmup_steps, config.max_steps - decay_steps)
        if step < decay_start:
            return config.lr
        progress = min(1.0, (step - decay_start) / max(1, config.max_steps - decay_start))
        return config.lr - (config.lr - floor) * progress
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))
    if config.schedule == "linear":
        return config.lr - (config.lr - floor) * progress
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def lr_factor(config: TrainConfig):
    """``step -> lr_at(step) / lr``: what ``torch.optim.lr_scheduler.LambdaLR`` multiplies the base rate by."""
    return lambda step: lr_at(step, config) / config.lr


def schedule_plot(config: TrainConfig, path) -> None:
    """The schedule over the whole run as a PNG (logged with the run, so its shape is visible
    before the loss curve says anything)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = range(config.max_steps)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(list(steps), [lr_at(s, config) for s in steps])
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title(f"{config.schedule}, warmup {config.warmup_steps}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
