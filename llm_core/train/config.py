"""The train stage's settings (``train:`` in the pipeline YAML), the model's shape included.

Sub-sections group what belongs together (``checkpoint``, ``validation``, ``cost``); the
optimisation settings stay flat, as in nanoGPT's and DeepSpeed's configs.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from llm_core.section import Section

if TYPE_CHECKING:
    from llm_core.models import TransformerConfig


class ModelConfig(Section):
    """The model's family and shape (llm_core.models.TransformerConfig, less the vocabulary: the tokenizer's)."""

    family: Literal["gpt", "bert", "t5"] = "gpt"  # causal LM; masked LM (+ next sentence); span corruption
    n_layer: int = Field(2, ge=1)  # T5: in the encoder and again in the decoder
    n_head: int = Field(4, ge=1)
    n_embd: int = Field(128, ge=8)
    block_size: int = Field(128, ge=8)  # the training context (T5: the input's)
    dropout: float = Field(0.0, ge=0, lt=1)
    bias: bool = False
    position: Literal["learned", "rotary"] = "learned"  # rotary: RoPE, runs past the training length
    max_positions: int | None = Field(None, ge=8)  # learned positions' table (default block_size)
    attention: Literal["dense", "sliding"] = "dense"  # sliding: local attention, cost O(T * window)
    window: int = Field(128, ge=1)  # sliding: the tokens each side a token sees
    global_tokens: int = Field(0, ge=0)  # sliding: leading tokens that see and are seen by every token
    tie_weights: bool = True
    nsp: bool = True  # BERT: next-sentence prediction beside the masked LM

    def transformer(self, vocab_size: int) -> "TransformerConfig":
        """The model of this shape for a tokenizer of ``vocab_size`` tokens."""
        from llm_core.models import TransformerConfig

        return TransformerConfig(vocab_size=vocab_size, **self.model_dump())

    @model_validator(mode="after")
    def _shape_is_consistent(self) -> "ModelConfig":
        from llm_core.models import TransformerConfig

        TransformerConfig(vocab_size=1, **self.model_dump())  # raises ValueError on what does not fit together
        return self


class CheckpointConfig(Section):
    """Periodic checkpoints, what a crashed or retried run resumes from (model, optimizer,
    scheduler, data position, RNG state). They live beside the output being built
    (``<train>/.work-<key>/checkpoints``), so a retry or a rerun of the same config finds them."""

    every_steps: int = Field(100, ge=0)  # 0: only the final one
    keep_last: int = Field(2, ge=1)
    resume: bool = True  # continue from the latest complete checkpoint of this output, if any


class ValidationConfig(Section):
    """Validation loss on the tokenizer's ``val`` split during training, and early stopping on it."""

    every_steps: int = Field(0, ge=0)  # 0: no validation during training
    batches: int = Field(8, ge=1)  # micro-batches of windows, the same ones at every evaluation
    patience: int | None = Field(None, ge=1)  # evaluations without improvement before stopping; None: never stop early
    min_delta: float = Field(0.0, ge=0)  # an improvement smaller than this does not count
    export: Literal["best", "last"] = "best"  # which weights become model.pt when validation runs


class CostConfig(Section):
    """Figures for the cost estimate logged before and after the run (all optional)."""

    peak_tflops: float | None = Field(None, gt=0)  # per device; None: looked up for known GPUs (MFU needs it)
    power_w: float | None = Field(None, gt=0)  # per device; NVML's measurement is used where available
    price_per_kwh: float | None = Field(None, ge=0)
    price_per_hour: float | None = Field(None, ge=0)  # per device, e.g. a cloud GPU's hourly rate
    tokens_per_s: float | None = Field(None, gt=0)  # expected throughput for the estimate before the run

    def for_devices(self, devices: int) -> tuple[float | None, float | None, float | None]:
        """``(power_w, price_per_kwh, price_per_hour)`` of the whole run on ``devices`` devices
        (what :func:`llm_core.train.cost.estimate_run` takes)."""
        return (self.power_w * devices if self.power_w is not None else None, self.price_per_kwh,
                self.price_per_hour * devices if self.price_per_hour is not None else None)


class NodesConfig(Section):
    """Training across machines, each running ``nproc_per_node`` processes, met through torchrun's
    c10d rendezvous. The stage's machine is one node and hosts the rendezvous; every other node
    runs ``llmpipe train-node <job.json>`` (the job file the stage writes beside its output, so
    the data root must be a filesystem every node mounts)."""

    count: int = Field(1, ge=1)
    rendezvous: str | None = None  # host:port of this (the stage's) machine that the other nodes reach
    join_timeout_s: float = Field(600.0, gt=0)  # how long the stage waits for every node to join

    @model_validator(mode="after")
    def _rendezvous_when_several(self) -> "NodesConfig":
        if self.count > 1 and not self.rendezvous:
            raise ValueError("train.nodes.count > 1 needs train.nodes.rendezvous: host:port of the stage's machine, "
                             "which the other nodes reach")
        if self.rendezvous and not re.fullmatch(r"\[?[\w.:-]+\]?:\d{1,5}", self.rendezvous):
            raise ValueError(f"train.nodes.rendezvous {self.rendezvous!r} is not host:port")
        return self


class TrainConfig(Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    zero_stage: int = Field(2, ge=0, le=3)
    offload_optimizer: bool = False
    offload_params: bool = False  # ZeRO-3 only
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    micro_batch_size: int = Field(8, ge=1)
    grad_accum_steps: int = Field(2, ge=1)
    # When set, the accumulation steps follow from it: global = micro × accumulation × processes.
    global_batch_size: int | None = Field(None, ge=1)
    max_steps: int = Field(200, ge=1)
    max_time_s: float | None = Field(None, gt=0)  # stop (and export) once this much training time has passed
    optimizer: Literal["adamw", "lamb"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    min_lr: float = Field(1e-4, ge=0)
    schedule: Literal["cosine", "linear", "constant", "wsd"] = "cosine"
    warmup_steps: int = Field(20, ge=0)
    decay_fraction: float = Field(0.2, gt=0, le=1)  # wsd: the last fraction of steps decays to min_lr
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = Field(1.0, ge=0)
    # A non-finite loss or gradient norm: stop with the step and the last good checkpoint; skip
    # the batch (a non-finite loss: its backward never runs; a non-finite gradient, whose update
    # is already applied, rolls back); or roll back to the last checkpoint with the learning
    # rate times rollback_lr_factor (the data sampler moves on: other batches follow).
    on_nonfinite: Literal["stop", "skip", "rollback"] = "stop"
    rollback_lr_factor: float = Field(0.5, gt=0, le=1)
    max_rollbacks: int = Field(3, ge=1)
    # Weights to start from instead of random ones: an earlier train output (its folder or its
    # model.pt) or a registered model (models:/NAME/VERSION, models:/NAME@ALIAS).
    init_from: str | None = None
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    tensorboard: bool = True
    # One step through DeepSpeed's FLOPs profiler and a short torch.profiler trace, as artifacts.
    profile: bool = False
    seed: int = 1337
    log_every: int = Field(10, ge=1)
    # Processes on each node (CPU: gloo; GPU: one per device, NCCL).
    nproc_per_node: int = Field(1, ge=1)
    nodes: NodesConfig = Field(default_factory=NodesConfig)
    # Model parallelism: the processes split into groups of pipeline_stages x tensor_parallel,
    # each group holding one copy of the model; the copies train data parallel (ZeRO).
    pipeline_stages: int = Field(1, ge=1)  # >1: the GPT's layers as DeepSpeed pipeline stages
    tensor_parallel: int = Field(1, ge=1)  # >1: every block's heads and MLP split Megatron-style

    @property
    def world_size(self) -> int:
        """Training processes over every node."""
        return self.nodes.count * self.nproc_per_node

    @property
    def model_parallel(self) -> int:
        """Processes that hold one copy of the model between them."""
        return self.pipeline_stages * self.tensor_parallel

    def data_parallel(self, world_size: int) -> int:
        """Copies of the model over ``world_size`` processes."""
        if world_size % self.model_parallel:
            raise ValueError(f"{world_size} processes do not split into groups of pipeline_stages "
                             f"{self.pipeline_stages} x tensor_parallel {self.tensor_parallel}")
        return world_size // self.model_parallel

    @model_validator(mode="after")
    def _parallelism_is_supported(self) -> "TrainConfig":
        m, pp, tp = self.model, self.pipeline_stages, self.tensor_parallel
        if pp > 1 and tp > 1:
            raise ValueError("pipeline_stages and tensor_parallel together are not supported yet: use one of them")
        if pp > 1:
            if m.family != "gpt":
                raise ValueError(f"pipeline_stages needs model.family gpt (the {m.family} model is not a layer sequence)")
            if m.n_layer % pp or pp > m.n_layer:
                raise ValueError(f"pipeline_stages ({pp}) must divide model.n_layer ({m.n_layer}): every stage "
                                 "holds the same number of blocks")
            if self.zero_stage > 1:
                raise ValueError("pipeline_stages needs zero_stage 0 or 1 (DeepSpeed: ZeRO-2 and ZeRO-3 are "
                                 "incompatible with pipeline parallelism)")
            if self.on_nonfinite == "skip":
                raise ValueError("on_nonfinite skip needs pipeline_stages 1: a pipeline step applies its update "
                                 "before its loss is known (use stop or rollback)")
        if tp > 1:
            if m.n_head % tp:
                raise ValueError(f"tensor_parallel ({tp}) must divide model.n_head ({m.n_head})")
            if self.zero_stage > 2 or self.optimizer != "adamw":
                raise ValueError("tensor_parallel needs optimizer adamw and zero_stage 0-2 (ZeRO-3 and LAMB's "
                                 "per-layer trust ratio over sharded layers are not supported)")
        return self

    @model_validator(mode="after")
    def _schedule_is_consistent(self) -> "TrainConfig":
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) exceeds max_steps ({self.max_steps})")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("offload_optimizer needs zero_stage 1, 2 or 3")
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("offload_params needs zero_stage 3")
        if self.optimizer == "lamb" and self.zero_stage != 0:
            # ZeRO 1-3 hand the optimizer flat partitions, not layers: the per-layer trust ratio,
            # LAMB's point, would be lost (DeepSpeed's FusedLamb is not a ZeRO optimizer either).
            raise ValueError("optimizer lamb needs zero_stage 0 (its trust ratio is per layer)")
        if self.offload_optimizer and self.optimizer != "adamw":
            raise ValueError("offload_optimizer runs DeepSpeed's CPU Adam: it needs optimizer adamw")
        if self.validation.patience and not self.validation.every_steps:
            raise ValueError("validation.patience needs validation.every_steps > 0")
        return self

    def accumulation(self, world_size: int) -> int:
        """Micro-batches per optimizer step on each copy of the model, from ``global_batch_size`` when set."""
        copies = self.data_parallel(world_size)
        if self.global_batch_size is None:
            return self.grad_accum_steps
        per_step = self.micro_batch_size * copies
        if self.global_batch_size % per_step:
            raise ValueError(f"global_batch_size {self.global_batch_size} is not a multiple of micro_batch_size "
                             f"{self.micro_batch_size} × {copies} model copies = {per_step}")
        return self.global_batch_size // per_step

    def tokens_per_step(self, world_size: int) -> int:
        """Tokens in one optimizer step over all processes (every copy of the model)."""
        return self.micro_batch_size * self.accumulation(world_size) * self.model.block_size * \
            self.data_parallel(world_size)
