"""The DeepSpeed config a :class:`TrainConfig` stands for.

The optimizer is DeepSpeed's own where it has one that runs here: ``AdamW`` (without
offload we ask for the plain torch AdamW, ``torch_adam``: DeepSpeed's fused/CPU Adam would
JIT-compile a C++ op (~40 s) and buys nothing at this size; on CUDA we add torch's own fused
kernel, ``fused``, which took ZeRO-2 on an H200 from 0.70x to 0.91x a plain PyTorch loop,
benchmarks/RESULTS.md); ZeRO-Offload needs DeepSpeedCPUAdam, so there it is compiled; LAMB
on GPUs is DeepSpeed's ``Lamb`` (FusedLamb, a CUDA op). LAMB on CPU has no DeepSpeed op:
the worker passes :class:`llm_core.train.lamb.Lamb` instead (:func:`needs_client_optimizer`).

The learning-rate schedule is not here: the worker passes a ``LambdaLR`` over
:func:`llm_core.train.schedule.lr_at` (DeepSpeed's schedulers have no warmup-stable-decay).
"""

from __future__ import annotations

from typing import Any

from llm_core.train.config import TrainConfig

FLOPS_PROFILE_FILE = "flops_profile.txt"
PROFILE_STEP = 3  # the optimizer step DeepSpeed's FLOPs profiler measures (past the first, slower steps)


def needs_client_optimizer(config: TrainConfig, cuda: bool) -> bool:
    return config.optimizer == "lamb" and not cuda


def deepspeed_config(config: TrainConfig, world_size: int = 1, cuda: bool = False,
                     profile_file: str | None = None) -> dict[str, Any]:
    """``cuda``: the optimizer runs on GPUs, where fused kernels are available.
    ``profile_file``: where DeepSpeed's FLOPs profiler writes its report (profiling on)."""
    zero: dict[str, Any] = {"stage": config.zero_stage}
    if config.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
    if config.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": False}
    ds: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": config.micro_batch_size,
        "gradient_accumulation_steps": config.accumulation(world_size),
        "gradient_clipping": config.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": config.precision == "bf16"},
        # Dynamic loss scaling: start at 2^12, halve on overflow (that step is skipped), double
        # after 1000 clean steps; the scale is logged.
        "fp16": {"enabled": config.precision == "fp16", "initial_scale_power": 12, "loss_scale": 0,
                 "loss_scale_window": 1000, "hysteresis": 2, "min_loss_scale": 1},
        "steps_per_print": 10**9,  # we log ourselves
        "wall_clock_breakdown": False,
    }
    if not needs_client_optimizer(config, cuda):
        ds["optimizer"] = optimizer_section(config, cuda)
    if profile_file:
        ds["flops_profiler"] = {"enabled": True, "profile_step": PROFILE_STEP, "module_depth": -1,
                                "top_modules": 3, "detailed": True, "output_file": profile_file}
    return ds


def optimizer_section(config: TrainConfig, cuda: bool) -> dict[str, Any]:
    if config.optimizer == "lamb":  # GPU: DeepSpeed's FusedLamb
        return {"type": "Lamb", "params": {"lr": config.lr, "betas": [config.beta1, config.beta2], "eps": 1e-6,
                                           "weight_decay": config.weight_decay}}
    return {
        "type": "AdamW",
        "params": {
            "lr": config.lr,
            "betas": [config.beta1, config.beta2],
            "eps": 1e-8,
            "weight_decay": config.weight_decay,
            "torch_adam": not config.offload_optimizer,
            **({"fused": True} if cuda and not config.offload_optimizer else {}),
        },
    }
