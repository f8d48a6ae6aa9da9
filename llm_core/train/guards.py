"""Guards of a training run: non-finite values found on any rank, decisions every rank shares,
and the faults tests inject (``$LLMPIPE_TRAIN_FAULT``: ``nan_loss@N``, ``nan_grad@N`` — a NaN
in the loss or in the gradients at step N, ``@N.M`` at its micro-batch M — or ``kill@N``:
rank 0 SIGKILLs itself at step N)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

FAULT_ENV = "LLMPIPE_TRAIN_FAULT"


class TrainingStopped(Exception):
    """A run that stops itself for a reason the user must see (written to ``failure.json``)."""


def all_finite(value: torch.Tensor | float, device) -> bool:
    """Whether ``value`` is finite on every rank (one all-reduce)."""
    flag = torch.tensor([1.0 if torch.isfinite(torch.as_tensor(value)).all() else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def rank0_says(condition: bool, device) -> bool:
    """Rank 0's ``condition`` on every rank (a wall-clock decision must not differ between ranks)."""
    flag = torch.tensor([1.0 if condition else 0.0], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


class NanGradient(torch.autograd.Function):
    """Identity forward, NaN backward: a non-finite gradient under a finite loss (fault injection)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def parse_fault() -> tuple[str, int, int] | None:
    """``(kind, step, micro-batch)`` from ``kind@STEP`` or ``kind@STEP.MICRO`` (micro-batch 0 by default)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return None
    kind, _, where = spec.partition("@")
    step, _, micro = where.partition(".")
    return kind, int(step), int(micro or 0)
