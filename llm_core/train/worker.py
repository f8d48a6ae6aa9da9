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
import resource
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record

from llm_core.models import GPT, GPTConfig
from llm_core.tokenizer.shards import TokenShards
from llm_core.train import cost
from llm_core.train.checkpoints import BEST, Checkpoints, step_tag
from llm_core.train.config import TrainConfig
from llm_core.train.ds_config import FLOPS_PROFILE_FILE, PROFILE_STEP, deepspeed_config, needs_client_optimizer
from llm_core.train.export import fp32_state_dict, replica_digest
from llm_core.train.guards import NanGradient, TrainingStopped, all_finite, parse_fault, rank0_says
from llm_core.train.monitor import METRICS_FILE, Monitor, progress_line
from llm_core.train.report import run_stats
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
        self.model = GPT(GPTConfig(vocab_size=self.train_data.vocab_size, block_size=m.block_size, n_layer=m.n_layer,
                                   n_head=m.n_head, n_embd=m.n_embd, dropout=m.dropout, bias=m.bias))
        if job.get("init_file"):  # continued training: the shapes were checked by the launcher
            self.model.load_state_dict(torch.load(job["init_file"], weights_only=True)["state_dict"])
        self.params = self.model.num_params()  # counted now: ZeRO-3 frees each rank's full parameters at initialize
        self.flops_per_token = cost.flops_per_token(self.params, m.n_layer, m.n_embd, m.block_size)
        self.accumulation = config.accumulation(self.world)
        self.tokens_per_step = config.micro_batch_size * self.accumulation * m.block_size * self.world
        self.engine = self._engine()
        self.device = self.engine.device
        self.rng = np.random.default_rng(config.seed + self.rank)  # each rank draws its own batches
        self.val_windows = self._validation_windows()
        self.checkpoints = Checkpoints(self.work_dir / "checkpoints", config.checkpoint.keep_last)
        self.state = TrainerState()
        resume_from = self.checkpoints.latest() if config.checkpoint.resume else None
        if resume_from is not None:
            self.state = TrainerState(**self.checkpoints.load(self.engine, resume_from, self.rng))
            self.state.resumed_from.append(self.state.step)
            self._say(f"resumed from {resume_from} (step {self.state.step})")
        self.monitor = None
        if self.rank == 0:
            self.monitor = Monitor(self.work_dir / METRICS_FILE,
                                   self.out_dir / TENSORBOARD_DIR if config.tensorboard else None,
                                   self.state.step if resume_from is not None else None)
        self.peak_tflops = config.cost.peak_tflops or (
            cost.peak_tflops(torch.cuda.get_device_name(), config.precision) if self.cuda else None)

    def _engine(self):
        import deepspeed

        config, cuda = self.config, self.cuda
        profile_file = str(self.out_dir / FLOPS_PROFILE_FILE) if config.profile else None  # written by rank 0
        groups = self.model.param_groups(config.weight_decay)
        optimizer = None
        if needs_client_optimizer(config, cuda):
            from llm_core.train.lamb import Lamb

            optimizer = Lamb(groups, lr=config.lr, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay)
        engine, _, _, _ = deepspeed.initialize(
            model=self.model, model_parameters=groups if optimizer is None else None, optimizer=optimizer,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(config)),
            config=deepspeed_config(config, self.world, cuda, profile_file),
        )
        return engine

    def _validation_windows(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The same validation batches at every evaluation (a fixed seed), on every rank."""
        v = self.config.validation
        if not v.every_steps:
            return []
        windows = TokenShards(self.shards_dir, "val").sample_windows(
            np.random.default_rng(self.config.seed), v.batches * self.config.micro_batch_size,
            self.config.model.block_size + 1)
        batches = torch.from_numpy(windows).split(self.config.micro_batch_size)
        return [(b[:, :-1].to(self.device), b[:, 1:].to(self.device)) for b in batches]

    def _say(self, message: str) -> None:
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
            if self.fault == ("kill", step) and self.rank == 0:
                os.kill(os.getpid(), signal.SIGKILL)

            figures: dict[str, float] = {}
            if step % config.log_every == 0 or step == config.max_steps:
                elapsed = state.train_s + time.perf_counter() - started
                figures = self._train_figures(window, steps_this_attempt, time.perf_counter() - started)
                figures["elapsed_s"] = elapsed
                window = []
            stop_early = False
            if self.val_windows and (step % config.validation.every_steps == 0 or step == config.max_steps):
                figures["val_loss"] = self._validate()
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
        state.train_s += time.perf_counter() - started
        self.energy_kwh = meter.stop() if meter is not None else None
        self._finish(stopped_by, steps_this_attempt, time.perf_counter() - started)

    def _one_step(self, step: int) -> list[float] | None:
        """One optimizer step (``accumulation`` micro-batches); its losses, or None after a rollback."""
        config, m = self.config, self.config.model
        losses: list[float] = []
        skipped_in_a_row = 0
        while len(losses) < self.accumulation:
            batch = torch.from_numpy(self.train_data.sample_windows(self.rng, config.micro_batch_size, m.block_size + 1))
            x, y = batch[:, :-1].to(self.device), batch[:, 1:].to(self.device)
            _, loss = self.engine(x, y)
            if self.fault is not None and self.fault[1] == step and self.fault[0] in ("nan_loss", "nan_grad"):
                loss = loss * float("nan") if self.fault[0] == "nan_loss" else NanGradient.apply(loss)
                self.fault = None  # once: a skipped batch or a rollback then goes on
            if not all_finite(loss.detach(), self.device):
                if config.on_nonfinite == "skip" and skipped_in_a_row < 10 * self.accumulation:
                    self.state.skipped_batches += 1
                    skipped_in_a_row += 1
                    self._say(f"step {step}: non-finite loss, batch skipped")
                    continue
                return self._nonfinite("loss", step)
            self.engine.backward(loss)
            self.engine.step()
            losses.append(loss.item())
        if config.precision != "fp16":  # under fp16 an overflow is the loss scaler's to skip
            norm = self.engine.get_global_grad_norm()
            if norm is not None and not all_finite(float(norm), self.device):
                return self._nonfinite("gradient norm", step)
        return losses

    def _nonfinite(self, what: str, step: int) -> None:
        """Stop with a clear message, or roll back to the last checkpoint with a lower rate."""
        config, state = self.config, self.state
        latest = self.checkpoints.latest()
        where = f"the last good checkpoint is {latest} (step {int(latest.name.split('-')[1])})" if latest else \
            "no checkpoint was written yet"
        rollback = config.on_nonfinite == "rollback" or (config.on_nonfinite == "skip" and what != "loss")
        if not rollback or latest is None or state.rollbacks >= config.max_rollbacks:
            why = {"stop": "",
                   "skip": " (a non-finite gradient cannot be skipped: its update is applied)" if what != "loss"
                   else f" ({10 * self.accumulation} batches in a row)",
                   "rollback": f" after {state.rollbacks} rollbacks" if latest else " and nothing to roll back to"}
            raise TrainingStopped(f"non-finite {what} at step {step}{why[config.on_nonfinite]}; {where}")
        kept = {"rollbacks": state.rollbacks + 1, "lr_scale": state.lr_scale * config.rollback_lr_factor,
                "skipped_batches": state.skipped_batches, "train_s": state.train_s}
        # The data sampler keeps its position: the batches that led to the fault are not drawn again.
        vars(state).update({**self.checkpoints.load(self.engine, latest, rng=None), **kept})  # in place: the loop holds it
        lr_scale = state.lr_scale
        scheduler = self.engine.lr_scheduler
        scheduler.base_lrs = [config.lr * lr_scale for _ in scheduler.base_lrs]
        for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
            group["lr"] = base * lr_factor(config)(scheduler.last_epoch)
        self._say(f"step {step}: non-finite {what}; rolled back to step {state.step}, "
                  f"learning rate × {lr_scale:g}")
        return None

    def _train_figures(self, window: list[float], steps: int, seconds: float) -> dict[str, float]:
        tokens_per_s = steps * self.tokens_per_step / max(seconds, 1e-9)
        figures = {
            "loss": float(np.mean(window)) if window else float("nan"),
            "lr": self.engine.get_lr()[0],
            "grad_norm": float(self.engine.get_global_grad_norm() or 0.0),
            "tokens_per_s": tokens_per_s,
            "peak_memory_mb": self.peak_memory_mb(),
        }
        if self.config.precision == "fp16":
            figures["loss_scale"] = float(self.engine.optimizer.cur_scale)
        if self.peak_tflops:
            figures["mfu"] = cost.mfu(tokens_per_s, self.flops_per_token, self.peak_tflops, self.world)
        return figures

    def peak_memory_mb(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated() / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux

    def _validate(self) -> float:
        self.engine.eval()
        with torch.no_grad():
            total = sum(self.engine(x, y)[1].float() for x, y in self.val_windows) / len(self.val_windows)
        self.engine.train()
        dist.all_reduce(total, op=dist.ReduceOp.AVG if self.cuda else dist.ReduceOp.SUM)
        return total.item() if self.cuda else total.item() / self.world

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
        best = self.checkpoints.best()
        if config.validation.export == "best" and best is not None and state.best_step not in (None, state.step):
            self.checkpoints.load(self.engine, best, rng=None)
            exported = state.best_step
        weights = fp32_state_dict(self.engine)  # a collective under ZeRO: every rank takes part
        dist.barrier()
        if self.rank == 0:
            self.monitor.close()
            torch.save({"config": self.model.config.to_dict(), "state_dict": weights}, self.out_dir / MODEL_FILE)
            (self.out_dir / METRICS_FILE).write_text((self.work_dir / METRICS_FILE).read_text())
            (self.out_dir / TRAIN_STATS_FILE).write_text(json.dumps(run_stats(
                self, stopped_by, exported, digests, steps_this_attempt, seconds), indent=2))
        dist.barrier()


def write_failure(out_dir: Path, message: str) -> None:
    (out_dir / FAILURE_FILE).write_text(json.dumps({"message": message}))


@record  # torchrun then prints the worker's traceback in its failure report (llm_core.train.launch reads it)
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("job", type=Path, help="job.json written by llm_core.train.launch")
    job = json.loads(parser.parse_args().job.read_text())

    import deepspeed  # imported late: its import is slow and prints accelerator detection

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
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
