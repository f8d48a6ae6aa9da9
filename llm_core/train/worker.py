"""One training process (``torchrun`` starts ``nproc_per_node`` of them).

The loop reads like nanoGPT's train.py: sample a batch from the memory-mapped shards,
forward, backward, step, log; DeepSpeed does accumulation, clipping, ZeRO partitioning and
mixed precision. Around it: checkpoints to resume from (:mod:`llm_core.train.checkpoints`),
a check for non-finite losses and gradients at every step, validation and early stopping,
and the figures of :mod:`llm_core.train.monitor`. Rank 0 writes the metrics and the plain
fp32 ``model.pt`` (the optimizer's fp32 master weights) for evaluation and the registry.

Every decision that changes the control flow (stop, roll back, skip) is taken from values
all ranks agree on (an all-reduced flag or loss), so no rank waits on a collective the
others left.

``$LLMPIPE_TRAIN_FAULT`` injects a fault for tests (:mod:`llm_core.train.guards`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record

from llm_core.models import build_model
from llm_core.models.block import param_groups
from llm_core.models.tensor_parallel import ModelParallelUnit, parallelize, unshard_state_dict
from llm_core.tokenizer.shards import TokenShards
from llm_core.train import cost
from llm_core.train.checkpoints import BEST, Checkpoints, step_tag
from llm_core.train.config import TrainConfig
from llm_core.train.ds_config import FLOPS_PROFILE_FILE, PROFILE_STEP, deepspeed_config, needs_client_optimizer
from llm_core.train.export import fp32_state_dict, global_grad_norm, replica_digest
from llm_core.train.lamb import Lamb
from llm_core.train.guards import NanGradient, TrainingStopped, all_finite, parse_fault, rank0_says
from llm_core.train.objectives import Batch, accuracy, objective_for
from llm_core.train.monitor import METRICS_FILE, Monitor, progress_line
from llm_core.train.recovery import close_step, handle_nonfinite
from llm_core.train.report import run_stats, train_figures
from llm_core.train.schedule import lr_factor

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_TAG = "final"
MODEL_FILE = "model.pt"
TRAIN_STATS_FILE = "train_stats.json"
FAILURE_FILE = "failure.json"  # why a run stopped itself, for the launcher's error message
TENSORBOARD_DIR = "tensorboard"
TRACE_FILE = "torch_trace.json"


@dataclass
class TrainerState:
    """The counters a checkpoint carries besides DeepSpeed's state (``trainer.json``)."""

    step: int = 0  # optimizer steps done
    train_s: float = 0.0  # training time over every attempt
    best_val_loss: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    skipped_batches: int = 0
    rollbacks: int = 0
    lr_scale: float = 1.0  # product of the rollbacks' factors
    resumed_from: list[int] = field(default_factory=list)


class Trainer:
    def __init__(self, job: dict[str, Any]):
        self.config = config = TrainConfig.model_validate(job["config"])
        self.shards_dir, self.out_dir, self.work_dir = Path(job["shards_dir"]), Path(job["out_dir"]), Path(job["work_dir"])
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.cuda = torch.cuda.is_available()
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.fault = parse_fault()
        torch.manual_seed(config.seed)
        self.train_data = TokenShards(self.shards_dir, "train")
        m = config.model
        full = build_model(m.transformer(self.train_data.vocab_size))  # the same weights on every rank (the seed)
        self.objective = objective_for(m.family, m.block_size, self.shards_dir, m.nsp)
        if job.get("init_file"):  # continued training: the shapes were checked by the launcher
            full.load_state_dict(torch.load(job["init_file"], weights_only=True)["state_dict"])
        self.params = full.num_params()  # counted now: ZeRO-3 frees each rank's full parameters at initialize
        self.flops_per_token = full.flops_per_token()
        self.model_config = full.config
        self.model = self.parallel_model(full)
        self.accumulation = config.accumulation(self.world)
        self.tokens_per_step = config.tokens_per_step(self.world)
        self.engine = self._engine()
        self.device = self.engine.device
        # Each copy of the model draws its own batches; the ranks that share a copy draw the same.
        self.rng = np.random.default_rng(config.seed + self.data_rank())
        self.val_windows = self._validation_windows()
        # ZeRO 0 with a torch optimizer in fp32 reports no gradient norm: measured here instead.
        self.own_grad_norm = config.zero_stage == 0 and config.precision == "fp32"
        self.last_grad_norm = None
        self.checkpoints = Checkpoints(self.work_dir / "checkpoints", config.checkpoint.keep_last)
        if not config.checkpoint.resume:
            self.checkpoints.clear()  # an earlier attempt's checkpoints must not be rolled back to or kept
        self.state = TrainerState()
        resume_from = self.checkpoints.latest() if config.checkpoint.resume else None
        if resume_from is not None:
            self.state = TrainerState(**self.checkpoints.load(self.engine, resume_from, self.rng))
            self.state.resumed_from.append(self.state.step)
            self.say(f"resumed from {resume_from} (step {self.state.step})")
        self.monitor = None
        if self.rank == 0:
            self.monitor = Monitor(self.work_dir / METRICS_FILE,
                                   self.work_dir / TENSORBOARD_DIR if config.tensorboard else None,
                                   self.state.step if resume_from is not None else None)
        self.peak_tflops = config.cost.peak_tflops or (
            cost.peak_tflops(torch.cuda.get_device_name(), config.precision) if self.cuda else None)

    # --- what model parallelism changes (llm_core.train.pipeline_trainer overrides these) -----

    def parallel_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module this rank trains: the whole model, or its shard under tensor parallelism."""
        self.mpu = None
        if self.config.tensor_parallel > 1:
            self.mpu = ModelParallelUnit(self.config.tensor_parallel)
            parallelize(model, self.mpu.get_model_parallel_group())
        return model

    def data_rank(self) -> int:
        """Which copy of the model this rank holds part of."""
        return self.mpu.get_data_parallel_rank() if self.mpu is not None else self.rank

    def export_weights(self) -> dict[str, torch.Tensor]:
        """The whole model's fp32 weights (a collective: every rank calls it)."""
        weights = fp32_state_dict(self.engine)
        return unshard_state_dict(self.engine.module, weights) if self.mpu is not None else weights

    def _engine(self):
        import deepspeed

        config, cuda = self.config, self.cuda
        profile_file = str(self.out_dir / FLOPS_PROFILE_FILE) if config.profile else None  # written by rank 0
        groups = param_groups(self.model, config.weight_decay)
        optimizer = None
        if needs_client_optimizer(config, cuda):
            optimizer = Lamb(groups, lr=config.lr, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay)
        engine, _, _, _ = deepspeed.initialize(
            model=self.model, model_parameters=groups if optimizer is None else None, optimizer=optimizer,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(config)),
            config=deepspeed_config(config, self.world, cuda, profile_file), mpu=self.mpu,
        )
        return engine

    def _validation_windows(self) -> list[Batch]:
        """The same validation batches at every evaluation (a fixed seed: BERT's masks and T5's
        spans too), on every rank."""
        v = self.config.validation
        if not v.every_steps:
            return []
        val, rng = TokenShards(self.shards_dir, "val"), np.random.default_rng(self.config.seed)
        return [self.to_device(self.objective.batch(val, rng, self.config.micro_batch_size)) for _ in range(v.batches)]

    def to_device(self, batch: Batch) -> Batch:
        return {name: t.to(self.device) for name, t in batch.items()}

    def say(self, message: str) -> None:
        if self.rank == 0:
            print(message, flush=True)

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        config, state = self.config, self.state
        meter = cost.PowerMeter() if self.rank == 0 and cost.PowerMeter.available() else None
        if meter is not None:
            meter.start()
        started = time.perf_counter()
        steps_this_attempt = 0
        stopped_by = "max_steps"
        window: list[float] = []
        profiler = None
        while state.step < config.max_steps:
            if config.max_time_s and rank0_says(state.train_s + time.perf_counter() - started >= config.max_time_s,
                                                self.device):
                stopped_by = "max_time_s"
                break
            step = state.step + 1
            if config.profile and self.rank == 0 and steps_this_attempt == PROFILE_STEP:
                profiler = torch.profiler.profile(record_shapes=False)
                profiler.start()
            losses = self._one_step(step)
            if losses is None:  # rolled back: the step counter went back to the checkpoint's
                window = []
                continue
            state.step = step
            steps_this_attempt += 1
            window += losses
            if profiler is not None and steps_this_attempt == PROFILE_STEP + 2:
                profiler.stop()
                profiler.export_chrome_trace(str(self.out_dir / TRACE_FILE))
                profiler = None
            if self.fault is not None and self.fault[:2] == ("kill", step) and self.rank == 0:
                os.kill(os.getpid(), signal.SIGKILL)

            figures: dict[str, float] = {}
            if step % config.log_every == 0 or step == config.max_steps:
                elapsed = state.train_s + time.perf_counter() - started
                figures = train_figures(self, window, steps_this_attempt, time.perf_counter() - started)
                figures["elapsed_s"] = elapsed
                window = []
            stop_early = False
            if self.val_windows and (step % config.validation.every_steps == 0 or step == config.max_steps):
                figures["val_loss"], accuracy_now = self._validate()
                if accuracy_now is not None:
                    figures["val_accuracy"] = accuracy_now
                stop_early = self._after_validation(figures["val_loss"], step, started)
            if figures and self.monitor is not None:
                self.monitor.record(step, figures)
                print(progress_line(step, config.max_steps, figures), flush=True)
            if stop_early:
                stopped_by = "early_stopping"
                break
            every = config.checkpoint.every_steps
            if every and step % every == 0 and step < config.max_steps:
                self._save(step_tag(step), started)
        if profiler is not None:  # the run ended inside the profiled steps
            profiler.stop()
            profiler.export_chrome_trace(str(self.out_dir / TRACE_FILE))
        state.train_s += time.perf_counter() - started
        self.energy_kwh = meter.stop() if meter is not None else None
        self._finish(stopped_by, steps_this_attempt, time.perf_counter() - started)

    def _one_step(self, step: int) -> list[float] | None:
        """One optimizer step (``accumulation`` micro-batches); its losses, or None after a rollback."""
        config = self.config
        losses: list[float] = []
        skipped_in_a_row = 0
        norm = None
        while len(losses) < self.accumulation:
            loss = self.micro_batch_loss()
            if self.fault is not None and self.fault[1:] == (step, len(losses)) and self.fault[0].startswith("nan"):
                loss = loss * float("nan") if self.fault[0] == "nan_loss" else NanGradient.apply(loss)
                self.fault = None  # once: a skipped batch or a rollback then goes on
            if not all_finite(loss.detach(), self.device):
                if config.on_nonfinite == "skip" and skipped_in_a_row < 10 * self.accumulation:
                    self.state.skipped_batches += 1
                    skipped_in_a_row += 1
                    self.say(f"step {step}: non-finite loss, batch skipped")
                    continue
                close_step(self, len(losses))
                return handle_nonfinite(self, "loss", step)
            self.engine.backward(loss)
            if self.own_grad_norm and len(losses) == self.accumulation - 1:  # all-reduced by now, not yet applied
                norm = global_grad_norm(self.model, self.mpu.get_model_parallel_group() if self.mpu else None)
            self.engine.step()
            losses.append(loss.item())
        self.last_grad_norm = self.engine.get_global_grad_norm() if norm is None else norm
        # Under fp16 an overflow is the loss scaler's: it skips that update and lowers the scale.
        if config.precision != "fp16" and self.last_grad_norm is not None \
                and not all_finite(float(self.last_grad_norm), self.device):
            return handle_nonfinite(self, "gradient norm", step)
        return losses

    def micro_batch_loss(self) -> torch.Tensor:
        batch = self.objective.batch(self.train_data, self.rng, self.config.micro_batch_size)
        return self.engine(**self.to_device(batch))[1]

    def _validate(self) -> tuple[float, float]:
        """Validation loss and the share of target tokens predicted right (next tokens for GPT,
        masked tokens for BERT, the target's tokens for T5), averaged over ranks."""
        self.engine.eval()
        totals = torch.zeros(3, dtype=torch.float64)  # loss sum, tokens right, tokens scored
        with torch.no_grad():
            for batch in self.val_windows:
                logits, loss = self.engine(**batch)
                right, scored = accuracy(logits, batch["targets"])
                totals += torch.tensor([loss.item(), right, scored], dtype=torch.float64)
        self.engine.train()
        totals = totals.to(self.device)
        dist.all_reduce(totals, op=dist.ReduceOp.SUM)  # gloo has no AVG
        loss_sum, right, scored = totals.tolist()
        return loss_sum / (len(self.val_windows) * self.world), right / max(scored, 1)

    def _after_validation(self, val_loss: float, step: int, started: float) -> bool:
        """Track the best validation loss (its checkpoint kept to export); True to stop early."""
        v, state = self.config.validation, self.state
        if state.best_val_loss is None or val_loss < state.best_val_loss - v.min_delta:
            state.best_val_loss, state.best_step, state.evals_since_best = val_loss, step, 0
            if v.export == "best" and step < self.config.max_steps:
                self._save(BEST, started)
            return False
        state.evals_since_best += 1
        return bool(v.patience and state.evals_since_best >= v.patience)

    def _save(self, tag: str, started: float) -> None:
        trainer = {**asdict(self.state), "train_s": self.state.train_s + time.perf_counter() - started}
        self.checkpoints.save(self.engine, tag, trainer, self.rng)

    # --- the end --------------------------------------------------------------------------

    def _finish(self, stopped_by: str, steps_this_attempt: int, seconds: float) -> None:
        config, state = self.config, self.state
        self.engine.save_checkpoint(str(self.out_dir / CHECKPOINT_DIR), tag=CHECKPOINT_TAG)
        digests: list[str | None] = [None] * self.world
        dist.all_gather_object(digests, replica_digest(self.engine))
        exported = state.step
        best = self.checkpoints.best() if config.validation.export == "best" else None
        if best is not None and state.best_step != state.step:  # the weights and figures of best/ itself
            saved = self.checkpoints.load(self.engine, best, rng=None)
            exported, state.best_val_loss, state.best_step = saved["step"], saved["best_val_loss"], saved["best_step"]
        weights = self.export_weights()  # a collective under ZeRO and tensor parallelism: every rank takes part
        dist.barrier()
        if self.rank == 0:
            self.monitor.close()
            if config.tensorboard:
                shutil.copytree(self.work_dir / TENSORBOARD_DIR, self.out_dir / TENSORBOARD_DIR, dirs_exist_ok=True)
            torch.save({"config": self.model_config.to_dict(), "state_dict": weights}, self.out_dir / MODEL_FILE)
            (self.out_dir / METRICS_FILE).write_text((self.work_dir / METRICS_FILE).read_text())
            (self.out_dir / TRAIN_STATS_FILE).write_text(json.dumps(run_stats(
                self, stopped_by, exported, digests, steps_this_attempt, seconds), indent=2))
        dist.barrier()


def write_failure(out_dir: Path, message: str) -> None:
    (out_dir / FAILURE_FILE).write_text(json.dumps({"message": message}))


@record  # torchrun then prints the worker's traceback in its failure report (llm_core.train.processes reads it)
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("job", type=Path, help="job.json written by llm_core.train.launch")
    job = json.loads(parser.parse_args().job.read_text())

    import deepspeed  # imported late: its import is slow and prints accelerator detection

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
    if job["config"].get("pipeline_stages", 1) > 1:
        from llm_core.train.pipeline_trainer import PipelineTrainer

        trainer = PipelineTrainer(job)
    else:
        trainer = Trainer(job)
    try:
        trainer.run()
    except TrainingStopped as stop:
        if trainer.rank == 0:
            write_failure(Path(job["out_dir"]), str(stop))
        raise
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
