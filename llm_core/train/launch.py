"""Launch training as ``torchrun`` worker processes and wait for them.

Training runs in child processes, never in the caller's: DeepSpeed initialises
``torch.distributed`` once per process, a crash or OOM cannot take the orchestrator down,
and the same command scales to several processes per node (gloo on CPU, NCCL on GPU).

A failed run is retried by the orchestrator only when the failure is transient (a killed
worker, a lost connection: :func:`failure_is_transient`); a run stopped from outside (a stage
timeout, Ctrl-C) takes its worker processes down with it (:func:`stop_workers`).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import psutil  # a dependency of deepspeed
import torch

from llm_core.train import cost
from llm_core.train.config import TrainConfig
from llm_core.errors import StageError
from llm_core.models import build_model
from llm_core.tokenizer.shards import TokenShards
from llm_core.train.init import InitialWeights
from llm_core.train.objectives import MissingSpecialTokens, Objective, objective_for
from llm_core.train.schedule import schedule_plot
from llm_core.train.worker import FAILURE_FILE, TRAIN_STATS_FILE

STAGE = "train"
SCHEDULE_PLOT = "lr_schedule.png"
log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # linux/prctl.h
STOP_GRACE_S = 20  # after SIGTERM, how long torchrun and its workers get to exit before SIGKILL
OUTPUT_TAIL_LINES = 400  # torchrun's output kept to classify a failure and show it

# torchrun's report on a worker that a signal ended ("exitcode  : -9 (pid: 123)"): the OOM
# killer, a preempted node, an NCCL watchdog abort (SIGABRT).
WORKER_KILLED = re.compile(r"exitcode\s*:\s*-\d+")
# Failures of the machines or of the network between them, not of the code: a retry may succeed.
# NCCL's own misuse errors (ncclInvalidUsage, ncclInvalidArgument) are bugs: not listed.
TRANSIENT_MARKERS = (
    "SignalException",  # torchrun itself got SIGTERM/SIGINT/SIGHUP (it exits 1, not -15)
    "Watchdog caught collective operation timeout", "NCCL communicator was aborted",
    "ncclSystemError", "ncclRemoteError", "ncclInternalError", "ncclUnhandledCudaError",
    "DistNetworkError", "DistStoreError",
    "gloo/transport",  # gloo's socket errors: "Connection closed by peer", "Timed out waiting ... for recv"
    "Connection reset by peer", "Connection closed by peer",
)
MARKS_ONLY = re.compile(r"\s*[\^~=]*")  # a blank line, a traceback's ^^^^ underline, a ==== border


def worker_command(config: TrainConfig, job_file: Path) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={config.nproc_per_node}",
        "-m", "llm_core.train.worker", str(job_file),
    ]


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


def failure_is_transient(returncode: int, output: str) -> bool:
    """Whether a failed ``torchrun`` may succeed when run again, from its exit code and output.

    Transient: torchrun or a worker ended by a signal (a negative exit code: the OOM killer's
    SIGKILL, the SIGTERM of a preempted node), or a distributed communication error (an NCCL
    or gloo connection lost, a collective timed out). Not transient: a Python exception in a
    worker (exit code 1 with a traceback) — the same bug, or the same bad data, fails again.

    Only the first observed failure counts when torchrun names it (its "Root Cause" block): a
    bug on one rank makes its peers report a closed connection, which must not make the bug
    look like a network failure.
    """
    if returncode < 0:
        return True
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Root Cause (first observed failure)")]
    if starts:
        output = "\n".join(lines[starts[-1]:])
    return bool(WORKER_KILLED.search(output)) or any(marker in output for marker in TRANSIENT_MARKERS)


def failure_report(lines: list[str], max_lines: int = 30) -> str:
    """What to show of a failed run: torchrun's report on the first failed worker, which holds
    that worker's traceback (the worker runs under ``@record``), else the last lines of output.

    The report's header (rank, exit code) and the traceback's innermost frames are kept;
    Python's ``^^^^`` underlines and torchrun's ``====`` border are dropped."""
    starts = [i for i, line in enumerate(lines) if line.startswith("Root Cause (first observed failure)")]
    if not starts:
        return "\n".join(lines[-max_lines:])
    report = [line for line in lines[starts[-1]:] if not MARKS_ONLY.fullmatch(line)]
    head = 8  # "Root Cause", "[0]:", time, host, rank, exitcode, error_file, "traceback : Traceback ..."
    if len(report) > max_lines:
        report = report[:head] + ["    ..."] + report[head - max_lines:]
    return "\n".join(report)


def stop_workers(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """Stop torchrun and its workers, and reap torchrun.

    torchrun starts each worker in a session of its own, so signalling torchrun's process
    group (its own session too: ``run_workers``) does not reach them; on SIGTERM torchrun
    stops them itself. What still runs after ``grace_s`` gets SIGKILL: torchrun's group and
    every descendant found before the SIGTERM (psutil checks that a pid still names the
    process it found, so a recycled pid is never hit).
    """
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    deadline = time.monotonic() + grace_s
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
    _, alive = psutil.wait_procs(descendants, timeout=max(0.0, deadline - time.monotonic()))
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    """Signal torchrun's process group, unless torchrun was already reaped (its pid may be reused)."""
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass


def stop_with_parent() -> Callable[[], None] | None:
    """What torchrun's process runs before it starts: ask for SIGTERM when its parent dies.

    Its own session keeps it out of the caller's signals, so without this an orchestrator
    killed outright (SIGKILL, the OOM killer) would leave it training on, holding the GPU
    and racing the retry; on SIGTERM torchrun stops its workers. Linux only
    (``prctl(PR_SET_PDEATHSIG)``); the signal follows the death of the thread that started
    torchrun, which is the one waiting on it here. ``prctl`` is looked up here, in the
    parent: between fork and exec the child only calls it, then checks that its parent did
    not die before the request was made."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return in_child


def run_workers(command: list[str], env: dict[str, str], log_path: Path) -> tuple[int, list[str]]:
    """Run ``torchrun``, copy its output to ``log_path``; return its exit code and last lines.

    torchrun runs in a session of its own, so that a stage timeout or Ctrl-C (any exception
    raised here while we wait on its output) stops it and its workers before propagating:
    the orchestrator's retry must not race a run that is still training.
    """
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", bufsize=1, start_new_session=True,
                                preexec_fn=stop_with_parent())
        try:
            for line in proc.stdout:
                log_file.write(line)
                tail.append(line.rstrip())
                if line.startswith("step "):
                    log.info("train: %s", line.strip())
            return proc.wait(), list(tail)
        except BaseException:
            log.warning("train: stopping the training processes")
            stop_workers(proc)
            raise
        finally:
            proc.stdout.close()


def check_before_start(config: TrainConfig, shards_dir: Path) -> None:
    """What would fail in the workers, failed here with a clear error before any starts (not retried)."""
    window = training_objective(config, shards_dir).window_tokens()
    check_enough_tokens(config, shards_dir, window)
    try:
        config.accumulation(config.nproc_per_node)
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
    tokens = config.max_steps * config.tokens_per_step(config.nproc_per_node)
    c = config.cost
    if c.tokens_per_s is None:
        log.info("train: %s parameters, %.3g FLOPs over %s tokens (set train.cost.tokens_per_s for a time and "
                 "cost estimate)", f"{params:,}", per_token * tokens, f"{tokens:,}")
        return {"flops_total": per_token * tokens}
    estimate = cost.estimate_run(tokens, per_token, c.tokens_per_s, *c.for_devices(config.nproc_per_node))
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
    env = dict(os.environ)
    if not torch.cuda.is_available():
        env.setdefault("DS_ACCELERATOR", "cpu")
    # DeepSpeed JIT-compiles C++ ops on first use (~30 s); keep the build cache with the
    # environment it was built for rather than in the home directory.
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // config.nproc_per_node)))
    command = worker_command(config, job_file)
    log.info("train: %s", " ".join(command))
    returncode, tail = run_workers(command, env, out_dir / "train.log")
    if returncode != 0:
        failure = out_dir / FAILURE_FILE
        if failure.is_file():  # the run stopped itself (a non-finite loss...): its reason, not a traceback
            raise StageError(STAGE, json.loads(failure.read_text())["message"], retryable=False)
        transient = failure_is_transient(returncode, "\n".join(tail))
        why = "a worker was killed or lost its peers (worth a retry)" if transient else "a worker failed (not retried)"
        raise StageError(STAGE, f"training processes exited with code {returncode}: {why}; see "
                         f"{out_dir / 'train.log'}. torchrun reported:\n{failure_report(tail)}", retryable=transient)
    stats = json.loads((out_dir / TRAIN_STATS_FILE).read_text())
    stats["cost"]["before_run"] = before
    if init is not None:
        stats["lineage"] = init.lineage
    return stats
