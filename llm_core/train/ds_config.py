"""The DeepSpeed config a :class:`TrainConfig` stands for.

Optimizer and LR schedule are DeepSpeed's own (``AdamW`` + ``WarmupCosineLR``), so a
DeepSpeed user reads a familiar config. Without offload we ask for the plain torch AdamW
(``torch_adam``): DeepSpeed's fused/CPU Adam would JIT-compile a C++ op (~40 s) and buys
nothing at this size; on CUDA we add torch's own fused kernel (``fused``), which took ZeRO-2
on an H200 from 0.70x to 0.91x a plain PyTorch loop (benchmarks/RESULTS.md). ZeRO-Offload
needs DeepSpeedCPUAdam, so there it is compiled.
"""

from __future__ import annotations

from typing import Any

from llm_core.train.config import TrainConfig


def deepspeed_config(config: TrainConfig, cuda: bool = False) -> dict[str, Any]:
    """``cuda``: the optimizer runs on GPUs, where torch's fused AdamW kernel is available."""
    zero: dict[str, Any] = {"stage": config.zero_stage}
    if config.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
    return {
        "train_micro_batch_size_per_gpu": config.micro_batch_size,
        "gradient_accumulation_steps": config.grad_accum_steps,
        "gradient_clipping": config.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": config.precision == "bf16"},
        "fp16": {"enabled": config.precision == "fp16", "initial_scale_power": 12},
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": config.lr,
                "betas": [config.beta1, config.beta2],
                "eps": 1e-8,
                "weight_decay": config.weight_decay,
                "torch_adam": not config.offload_optimizer,
                **({"fused": True} if cuda and not config.offload_optimizer else {}),
            },
        },
        "scheduler": {
            "type": "WarmupCosineLR",
            "params": {
                "total_num_steps": config.max_steps,
                "warmup_num_steps": config.warmup_steps,
                "warmup_min_ratio": 0.0,
                "cos_min_ratio": config.min_lr / config.lr,
                "warmup_type": "linear",
            },
        },
        "steps_per_print": 10**9,  # we log ourselves
        "wall_clock_breakdown": False,
    }
