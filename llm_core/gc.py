"""Housekeeping: remove stage outputs no run needs any more, and leftovers of dead runs.

- An **output** (``<data_root>/<stage>/<key>/``) is collected when none of the last
  ``keep_runs`` recorded pipeline runs (llm_core.runs) used it and it is older than
  ``min_age_s``. A run in progress has written its record at its start, so its outputs
  are kept. With no run recorded at all nothing is known to be in use, and no output is
  collected.
- A **temporary directory** (``.tmp-<key>-<host>-<pid>-*``, a build that never finished)
  is collected when its process is known dead (same host) or, from any host, when nothing
  in it has changed for ``tmp_min_age_s`` (a live build keeps writing); a live process of
  this host keeps its directory whatever its age. A directory at an output's path without
  ``_SUCCESS`` (debris of an older crash) is treated the same way.

Nothing is removed unless ``apply`` is called: ``llmpipe gc`` is a dry run by default.
Lock files (``.<key>.lock``, a few bytes) are left: removing one that a waiting run has
open would let two runs build the same output.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from llm_core.runs import recorded_runs
from llm_core.storage import SUCCESS_MARKER, is_complete, process_alive

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Removal:
    path: Path
    kind: str  # "output" | "tmp" | "debris"
    reason: str
    bytes: int


@dataclass
class GcPlan:
    removals: list[Removal] = field(default_factory=list)
    kept_outputs: int = 0
    runs_considered: int = 0
    note: str | None = None

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.removals)


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def last_change(path: Path) -> float:
    """Newest modification time of the directory or anything in it."""
    times = [path.stat().st_mtime] + [p.stat().st_mtime for p in path.rglob("*") if not p.is_symlink()]
    return max(times)


def tmp_owner(name: str, key: str) -> tuple[str, int | None]:
    """(host, pid) from ``.tmp-<key>-<host>-<pid>-<uuid8>``; hosts may contain dashes."""
    rest = name[len(f".tmp-{key}-"):]
    host, _, tail = rest.rpartition("-")  # tail: uuid
    host, _, pid = host.rpartition("-")
    return host, int(pid) if pid.isdigit() else None


def _tmp_removal(path: Path, key: str, now: float, tmp_min_age_s: float) -> Removal | None:
    host, pid = tmp_owner(path.name, key)
    if host == socket.gethostname() and pid is not None:
        if process_alive(pid):
            return None
        return Removal(path, "tmp", f"its process {pid} on this host is dead", tree_size(path))
    idle = now - last_change(path)
    if idle > tmp_min_age_s:
        return Removal(path, "tmp", f"untouched for {idle / 3600:.1f} h (process {pid} on {host})", tree_size(path))
    return None


def plan_gc(data_root: Path, stages: tuple[str, ...], keep_runs: int = 5, min_age_s: float = 3600.0,
            tmp_min_age_s: float = 86400.0, now: float | None = None) -> GcPlan:
    """What ``apply_gc`` would remove under ``data_root``; removes nothing."""
    now = time.time() if now is None else now
    data_root = Path(data_root)
    records = recorded_runs(data_root)[:keep_runs] if keep_runs > 0 else []
    in_use = {Path(p).resolve() for r in records for p in r.get("outputs", {}).values()}
    plan = GcPlan(runs_considered=len(records))
    if not records:
        plan.note = (f"no pipeline run is recorded under {data_root / 'runs'} (or keep_runs is 0): "
                     "nothing is known to be in use, so no output is removed")
    for stage in stages:
        stage_dir = data_root / stage
        if not stage_dir.is_dir():
            continue
        for path in sorted(stage_dir.iterdir()):
            if not path.is_dir():
                continue
            if path.name.startswith(".tmp-"):
                key = path.name[len(".tmp-"):].split("-", 1)[0]
                removal = _tmp_removal(path, key, now, tmp_min_age_s)
            elif not is_complete(path):
                idle = now - last_change(path)
                removal = (Removal(path, "debris", f"no {SUCCESS_MARKER}, untouched for {idle / 3600:.1f} h",
                                   tree_size(path)) if idle > tmp_min_age_s else None)
            elif not records or path.resolve() in in_use:
                plan.kept_outputs += 1
                removal = None
            else:
                age = now - (path / SUCCESS_MARKER).stat().st_mtime
                if age > min_age_s:
                    removal = Removal(path, "output", f"not used by the last {len(records)} run(s), "
                                      f"built {age / 86400:.1f} days ago", tree_size(path))
                else:
                    plan.kept_outputs += 1
                    removal = None
            if removal:
                plan.removals.append(removal)
    return plan


def apply_gc(plan: GcPlan) -> int:
    """Remove what ``plan`` lists; returns the bytes freed. An output is first renamed aside,
    so a reader never sees it half deleted (it is either complete or gone)."""
    freed = 0
    for removal in plan.removals:
        if not removal.path.exists():
            continue
        target = removal.path
        if removal.kind == "output":
            target = removal.path.with_name(f".gc-{removal.path.name}-{os.getpid()}")
            os.rename(removal.path, target)
        shutil.rmtree(target, ignore_errors=True)
        log.info("removed %s (%s)", removal.path, removal.reason)
        freed += removal.bytes
    return freed
