"""The training processes as the orchestrator sees them: started in a session of their own,
stopped with the orchestrator, their failure classified (worth a retry or not) and reported.

A failed run is retried by the orchestrator only when the failure is transient (a killed
worker, a lost connection: :func:`failure_is_transient`); a run stopped from outside (a stage
timeout, Ctrl-C) takes its worker processes down with it (:func:`stop_workers`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Callable

import psutil  # a dependency of deepspeed

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
