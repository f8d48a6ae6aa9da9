"""The train stage's settings (``train:`` in the pipeline YAML), the model's shape included."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from llm_core.section import Section


class ModelConfig(Section):
    n_layer: int = Field(2, ge=1)
    n_head: int = Field(4, ge=1)
    n_embd: int = Field(128, ge=8)
    block_size: int = Field(128, ge=8)
    dropout: float = Field(0.0, ge=0, lt=1)
    bias: bool = False

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "ModelConfig":
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        return self


class TrainConfig(Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    zero_stage: int = Field(2, ge=0, le=3)
    offload_optimizer: bool = False
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    micro_batch_size: int = Field(8, ge=1)
    grad_accum_steps: int = Field(2, ge=1)
    max_steps: int = Field(200, ge=1)
    lr: float = Field(1e-3, gt=0)
    min_lr: float = Field(1e-4, ge=0)
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = Field(1.0, ge=0)
    seed: int = 1337
    log_every: int = Field(10, ge=1)
    # Processes on this node (CPU: gloo; GPU: one per device, NCCL).
    nproc_per_node: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _schedule_is_consistent(self) -> "TrainConfig":
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) exceeds max_steps ({self.max_steps})")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("offload_optimizer needs zero_stage 1, 2 or 3")
        return self
