"""LAMB in plain PyTorch, for training where DeepSpeed's ``FusedLamb`` (a CUDA op) cannot run.

LAMB (You et al. 2019, "Large Batch Optimization for Deep Learning: Training BERT in 76
minutes", arXiv:1904.00962, Algorithm 2) is Adam whose step is rescaled per tensor by the
trust ratio ``||p|| / ||u||``, so every layer moves by a similar fraction of its own norm
whatever the batch size: that is what lets the learning rate grow with very large batches.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class Lamb(torch.optim.Optimizer):
    """LAMB (Algorithm 2 of the paper) for CPU training, usable as ``deepspeed.initialize(optimizer=Lamb(...))``.

    Per parameter tensor ``p`` with gradient ``g`` at step ``t``::

        m = beta1 * m + (1 - beta1) * g          v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**t)               v_hat = v / (1 - beta2**t)   (if bias_correction)
        u = m_hat / (sqrt(v_hat) + eps) + weight_decay * p
        r = clamp(||p|| / ||u||, min_coeff, max_coeff)    (1.0 when either norm is 0)
        p = p - lr * r * u

    The arguments are named as in DeepSpeed's ``FusedLamb`` (``deepspeed.ops.lamb``) so a
    config written for one fits the other: ``max_coeff`` / ``min_coeff`` bound the trust ratio
    itself, as FusedLamb does (the paper's phi bounds ``||p||`` instead), defaults 10.0 and 0.01,
    and ``eps`` defaults to FusedLamb's 1e-8 (added outside the square root, FusedLamb's
    default mode). FusedLamb's ``max_grad_norm`` is left out: DeepSpeed's
    ``gradient_clipping`` clips before the step. Parameter groups work as with any torch
    optimizer, e.g. a group with ``weight_decay=0`` for norms and biases. The last trust
    ratio of each tensor is kept in ``state["trust_ratio"]``; :func:`lamb_trust_ratios`
    lists them for logging.

    Parameters must be fp32 and state is fp32: under DeepSpeed this always holds, since the
    optimizer is handed the fp32 master weights when the model runs in bf16/fp16.

    The trust ratio is computed per tensor the optimizer sees. Under ZeRO 0 (fp32, or
    bf16/fp16 through ``FP16_UnfusedOptimizer``, which keeps one fp32 copy per parameter)
    that is one per layer, as in the paper. ZeRO 1-3 flatten each parameter group into one
    tensor and give each rank a partition cut at arbitrary offsets, which would make it LAMB
    in name only: the train config therefore allows LAMB with ZeRO 0 only.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        bias_correction: bool = True,
        max_coeff: float = 10.0,
        min_coeff: float = 0.01,
    ) -> None:
        if not 0.0 <= min_coeff <= max_coeff:
            raise ValueError(f"need 0 <= min_coeff <= max_coeff, got {min_coeff}, {max_coeff}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        bias_correction=bias_correction, max_coeff=max_coeff, min_coeff=min_coeff)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        """One LAMB step of one tensor, in place."""
        if p.grad.is_sparse:
            raise TypeError("Lamb does not support sparse gradients")
        if p.dtype != torch.float32:
            raise TypeError(f"Lamb keeps fp32 state and needs fp32 parameters (fp32 master weights), got {p.dtype}")
        beta1, beta2 = group["betas"]
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        m_hat, v_hat = m, v
        if group["bias_correction"]:
            m_hat = m / (1 - beta1 ** state["step"])
            v_hat = v / (1 - beta2 ** state["step"])
        update = m_hat / (v_hat.sqrt() + group["eps"])
        if group["weight_decay"]:
            update.add_(p, alpha=group["weight_decay"])
        # a tensor, not a float: no host sync per parameter when this runs on an accelerator
        p_norm, u_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(update)
        ratio = torch.where((p_norm > 0) & (u_norm > 0),
                            (p_norm / u_norm).clamp(group["min_coeff"], group["max_coeff"]),
                            torch.ones_like(p_norm))
        state["trust_ratio"] = ratio
        p.add_(update * ratio, alpha=-group["lr"])


def lamb_trust_ratios(optimizer: Lamb) -> list[float]:
    """The trust ratio of each tensor's last step, in parameter order, for a trainer to log (e.g. their mean)."""
    return [optimizer.state[p]["trust_ratio"].item()
            for group in optimizer.param_groups for p in group["params"]
            if "trust_ratio" in optimizer.state[p]]
