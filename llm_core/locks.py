"""One builder per output: an exclusive lock file next to each output directory.

Two runs of one config (two workers, a schedule and a CLI run) both reach a stage whose
output is missing; the first takes ``<stage>/.<key>.lock`` and builds, the other waits
and then finds the output complete. The lock is an OS file lock (``flock`` through the
``filelock`` library): the kernel releases it when its holder dies, even by SIGKILL, so a
crashed builder never blocks the next run. Across machines it holds on a shared filesystem
that supports ``flock`` (local disks, NFSv4, Lustre/GPFS with flock enabled).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)
WAIT_LOG_S = 30.0


def lock_path(output: Path) -> Path:
    return output.parent / f".{output.name}.lock"


@contextmanager
def output_lock(output: Path, poll_s: float = WAIT_LOG_S) -> Iterator[None]:
    """Hold the build lock of ``output``, waiting (and saying so every ``poll_s``) while another run holds it."""
    lock = FileLock(lock_path(output))
    started = time.monotonic()
    while True:
        try:
            lock.acquire(timeout=poll_s)
            break
        except Timeout:
            log.info("waiting for another run that is building %s (%.0f s so far)", output, time.monotonic() - started)
    try:
        yield
    finally:
        lock.release()


def wait_while_building(output: Path, poll_s: float = WAIT_LOG_S) -> None:
    """Return once no other process holds ``output``'s build lock (at once if none does).

    The orchestrator calls this before starting a stage's task, so that time spent waiting
    for another run's build does not count against this run's stage timeout."""
    if not lock_path(output).exists():
        return
    with output_lock(output, poll_s):
        pass
