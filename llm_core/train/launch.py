"""Launch training as ``torchrun`` worker processes and wait for them.

Training runs in child processes, never in the caller's: DeepSpeed initialises
``torch.distributed`` once per process, a crash or OOM cannot take the orchestrator down,
and the same command scales to several processes per node (gloo on CPU, NCCL on GPU) and
to several nodes (:mod:`llm_core.train.nodes`). How the processes are run, stopped and their
failures classified: :mod:`llm_core.train.processes`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import torch

from llm_core.train import cost
from llm_core.train.config import TrainConfig
from llm_core.errors import StageError
from llm_core.models import build_model
from llm_core.tokenizer.shards import TokenShards
from llm_core.train.init import InitialWeights
from llm_core.train.nodes import check_rendezvous, rendezvous_args, rendezvous_timed_out
from llm_core.train.objectives import MissingSpecialTokens, Objective, objective_for
from llm_core.train.processes import failure_is_transient, failure_report, run_workers
from llm_core.train.schedule import schedule_plot
from llm_core.train.worker import FAILURE_FILE, TRAIN_STATS_FILE

STAGE = "train"
SCHEDULE_PLOT = "lr_schedule.png"
log = logging.getLogger(__name__)

def worker_command(config: TrainConfig, job_file: Path) -> list[str]:
    """torchrun: standalone on one node, else joining the c10d rendezvous (llm_core.train.nodes)."""
    where = ["--standalone"] if config.nodes.count == 1 else rendezvous_args(config.nodes, job_file)
    return [sys.executable, "-m", "torch.distributed.run", *where, f"--nproc_per_node={config.nproc_per_node}",
            "-m", "llm_core.train.worker", str(job_file)]


def worker_env(config: TrainConfig) -> dict[str, str]:
    """The environment of the training processes (the same on every node)."""
    env = dict(os.environ)
    if not torch.cuda.is_available():
        env.setdefault("DS_ACCELERATOR", "cpu")
    # DeepSpeed JIT-compiles C++ ops on first use (~30 s); keep the build cache with the
    # environment it was built for rather than in the home directory.
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // config.nproc_per_node)))
    return env


def check_enough_tokens(config: TrainConfig, shards_dir: Path, window: int) -> None:
    """Fail before starting workers when no training window fits in the data (not worth a retry)."""
    longest = TokenShards(shards_dir, "train").longest_shard()
    if longest <= window:
        raise StageError(STAGE, f"the largest training shard has {longest} tokens, too few for one training window "
                         f"of {window} tokens (train.model.block_size {config.model.block_size}, family "
                         f"{config.model.family}); crawl more pages or lower train.model.block_size")


def training_objective(config: TrainConfig, shards_dir: Path) -> Objective:
    """The family's objective over these shards; a tokenizer without the family's special tokens
    is a clear error here, before any worker starts."""
    m = config.model
    try:
        return objective_for(m.family, m.block_size, shards_dir, m.nsp)
    except MissingSpecialTokens as exc:
        raise StageError(STAGE, str(exc)) from None


def check_before_start(config: TrainConfig, shards_dir: Path) -> None:
    """What would fail in the workers, failed here with a clear error before any starts (not retried)."""
    if config.nodes.count > 1:
        check_rendezvous(config.nodes)
    window = training_objective(config, shards_dir).window_tokens()
    check_enough_tokens(config, shards_dir, window)
    try:
        config.accumulation(config.world_size)
    except ValueError as exc:
        raise StageError(STAGE, str(exc)) from None
    if config.validation.every_steps:
        val = TokenShards(shards_dir, "val") if "val" in TokenShards.splits(shards_dir) else None
        if val is None or val.longest_shard() <= window:
            raise StageError(STAGE, "validation during training needs a val split with more than "
                             f"{window} tokens (one training window) in one shard; "
                             "raise tokenizer.val_fraction or set train.validation.every_steps: 0")


def log_estimate(config: TrainConfig, vocab_size: int) -> dict[str, Any]:
    """The run's FLOPs, and its time, energy and cost at ``train.cost.tokens_per_s`` when given,
    logged before any worker starts (the worker reports the measured figures beside them)."""
    m = config.model
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = build_model(m.transformer(vocab_size))
        params, per_token = model.num_params(), model.flops_per_token()
    tokens = config.max_steps * config.tokens_per_step(config.world_size)
    c = config.cost
    if c.tokens_per_s is None:
        log.info("train: %s parameters, %.3g FLOPs over %s tokens (set train.cost.tokens_per_s for a time and "
                 "cost estimate)", f"{params:,}", per_token * tokens, f"{tokens:,}")
        return {"flops_total": per_token * tokens}
    estimate = cost.estimate_run(tokens, per_token, c.tokens_per_s, *c.for_devices(config.world_size))
    log.info("train: %s parameters, %.3g FLOPs over %s tokens: %.0f s at %s tokens/s, energy %s kWh, cost %s",
             f"{params:,}", estimate["flops_total"], f"{tokens:,}", estimate["time_s"], c.tokens_per_s,
             *("unknown" if v is None else f"{v:.3g}" for v in (estimate["energy_kwh"], estimate["cost"])))
    return estimate


def train(config: TrainConfig, shards_dir: Path, out_dir: Path, work_dir: Path | None = None,
          init: InitialWeights | None = None) -> dict[str, Any]:
    """Train into ``out_dir``; checkpoints and the live metrics go to ``work_dir`` (default
    ``out_dir/work``), where a rerun of the same job finds them and resumes. ``init``: the
    weights to start from (:func:`llm_core.train.init.initial_weights`)."""
    check_before_start(config, shards_dir)
    work_dir = Path(work_dir) if work_dir is not None else out_dir / "work"
    work_dir.mkdir(parents=True, exist_ok=True)
    vocab_size = TokenShards(shards_dir, "train").vocab_size
    if init is not None:
        init.check_shape(config, vocab_size)
    before = log_estimate(config, vocab_size)
    job_file = out_dir / "job.json"
    job_file.write_text(json.dumps({
        "config": config.model_dump(mode="json"), "shards_dir": str(shards_dir), "out_dir": str(out_dir),
        "work_dir": str(work_dir), "init_file": str(init.file) if init else None,
    }, indent=2))
    schedule_plot(config, out_dir / SCHEDULE_PLOT)
    command = worker_command(config, job_file)
    log.info("train: %s", " ".join(command))
    if config.nodes.count > 1:
        log.info("train: waiting up to %.0f s for %d more node(s): run `llmpipe train-node %s` on each",
                 config.nodes.join_timeout_s, config.nodes.count - 1, job_file)
    returncode, tail = run_workers(command, worker_env(config), out_dir / "train.log")
    if returncode != 0:
        failure = out_dir / FAILURE_FILE
        if failure.is_file():  # the run stopped itself (a non-finite loss...): its reason, not a traceback
            raise StageError(STAGE, json.loads(failure.read_text())["message"], retryable=False)
        if config.nodes.count > 1 and rendezvous_timed_out("\n".join(tail)):
            raise StageError(STAGE, f"not every node joined the rendezvous at {config.nodes.rendezvous} within "
                             f"{config.nodes.join_timeout_s:g} s (train.nodes.count {config.nodes.count}): run "
                             f"`llmpipe train-node {job_file}` on each other node", retryable=False)
        transient = failure_is_transient(returncode, "\n".join(tail))
        why = "a worker was killed or lost its peers (worth a retry)" if transient else "a worker failed (not retried)"
        raise StageError(STAGE, f"training processes exited with code {returncode}: {why}; see "
                         f"{out_dir / 'train.log'}. torchrun reported:\n{failure_report(tail)}", retryable=transient)
    stats = json.loads((out_dir / TRAIN_STATS_FILE).read_text())
    stats["cost"]["before_run"] = before
    if init is not None:
        stats["lineage"] = init.lineage
    return stats


def join_as_node(job_file: Path) -> int:
    """Run this machine's processes of a multi-node training job (``llmpipe train-node``): the
    stage on the rendezvous host wrote ``job_file``; its output folder must be reachable here at
    the same path (a shared filesystem). Returns torchrun's exit code."""
    job = json.loads(Path(job_file).read_text())
    config = TrainConfig.model_validate(job["config"])
    if config.nodes.count == 1:
        raise StageError(STAGE, f"{job_file} is a single-node job (train.nodes.count 1): nothing to join")
    if not Path(job["out_dir"]).is_dir():
        raise StageError(STAGE, f"{job['out_dir']} (the job's output) is not reachable from this machine: "
                         "multi-node training needs the data root on a filesystem every node mounts")
    log_dir = Path(job["work_dir"]) / "nodes"
    log_dir.mkdir(parents=True, exist_ok=True)
    returncode, tail = run_workers(worker_command(config, Path(job_file)), worker_env(config),
                                   log_dir / f"{socket.gethostname()}-{os.getpid()}.log")
    if returncode:
        log.error("train-node: torchrun exited with %d:\n%s", returncode, failure_report(tail))
    return returncode
