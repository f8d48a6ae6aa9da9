"""Housekeeping: remove stage outputs no run needs any more, and leftovers of dead runs.

- An **output** (``<data_root>/<stage>/<key>/``) is collected when none of the last
  ``keep_runs`` recorded pipeline runs (llm_core.runs) used it, no run in progress uses it
  (a ``running`` record whose process is alive on this host, or, from another host, that
  was updated within ``stale_run_s``), it is older than ``min_age_s``, and no kept output
  was built from it (the ``inputs`` in a kept output's ``stats.json``, followed upstream).
  With no run recorded at all nothing is known to be in use, and no output is collected.
- A **temporary directory** (``.tmp-<key>-<host>-<pid>-*``, a build that never finished)
  is collected when its process is known dead (same host) or, from any host, when nothing
  in it has changed for ``tmp_min_age_s`` (a live build keeps writing); a live process of
  this host keeps its directory whatever its age. A directory at an output's path without
  ``_SUCCESS`` (debris of an older crash) is treated the same way, and so is a build's
  resumable state (``.work-<key>``, a crawl's frontier) once untouched for that long.

Nothing is removed unless ``apply`` is called: ``llmpipe gc`` is a dry run by default.
``apply_gc`` reads the run records again before each removal and skips what became in use
since the plan, and renames an output aside under its build lock, so a reader sees it
whole or not at all.
Lock files (``.<key>.lock``, a few bytes) are left: removing one that a waiting run has
open would let two runs build the same output.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from filelock import FileLock, Timeout

from llm_core.locks import lock_path
from llm_core.runs import recorded_runs
from llm_core.storage import STATS_FILE, SUCCESS_MARKER, WORK_PREFIX, is_complete, process_alive, tmp_dir_owner

log = logging.getLogger(__name__)
WEEK_S = 7 * 86400.0


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
    # What "in use" meant for this plan; apply_gc checks it again with the same settings.
    keep_runs: int = 5
    stale_run_s: float = WEEK_S

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.removals)


def run_in_progress(record: dict, now: float, stale_run_s: float) -> bool:
    """A ``running`` record whose run may still be going: its process is alive (this host),
    or it was updated recently (another host, whose processes we cannot see)."""
    if record.get("state") != "running":
        return False
    if record.get("host") == socket.gethostname() and isinstance(record.get("pid"), int):
        return process_alive(record["pid"])
    try:
        updated = datetime.fromisoformat(record["updated_at"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return True  # unreadable: keep what it names
    return now - updated < stale_run_s


def outputs_in_use(data_root: Path, keep_runs: int, stale_run_s: float, now: float) -> tuple[set[Path], int]:
    """Outputs the last ``keep_runs`` runs used or a run in progress uses; and how many runs that is."""
    records = recorded_runs(data_root)
    chosen = [r for i, r in enumerate(records) if i < keep_runs or run_in_progress(r, now, stale_run_s)]
    return {Path(p).resolve() for r in chosen for p in r.get("outputs", {}).values()}, len(chosen)


def input_paths(output: Path) -> list[Path]:
    """The outputs this one was built from (its ``stats.json`` names their stages and keys)."""
    try:
        inputs = json.loads((output / STATS_FILE).read_text()).get("inputs", {})
    except (OSError, ValueError):
        return []
    return [(output.parent.parent / stage / key).resolve() for stage, key in inputs.items()]


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def last_change(path: Path) -> float:
    """Newest modification time of the directory or anything in it."""
    times = [path.stat().st_mtime] + [p.stat().st_mtime for p in path.rglob("*") if not p.is_symlink()]
    return max(times)


def _tmp_removal(path: Path, now: float, tmp_min_age_s: float) -> Removal | None:
    _, host, pid = tmp_dir_owner(path.name)
    if host == socket.gethostname() and pid is not None:
        if process_alive(pid):
            return None
        return Removal(path, "tmp", f"its process {pid} on this host is dead", tree_size(path))
    idle = now - last_change(path)
    if idle > tmp_min_age_s:
        return Removal(path, "tmp", f"untouched for {idle / 3600:.1f} h (process {pid} on {host})", tree_size(path))
    return None


def plan_gc(data_root: Path, stages: tuple[str, ...], keep_runs: int = 5, min_age_s: float = 3600.0,
            tmp_min_age_s: float = 86400.0, stale_run_s: float = WEEK_S, now: float | None = None) -> GcPlan:
    """What ``apply_gc`` would remove under ``data_root``; removes nothing."""
    now = time.time() if now is None else now
    data_root = Path(data_root)
    in_use, runs_considered = outputs_in_use(data_root, keep_runs, stale_run_s, now)
    plan = GcPlan(runs_considered=runs_considered, keep_runs=keep_runs, stale_run_s=stale_run_s)
    if not runs_considered:
        plan.note = (f"no pipeline run is recorded under {data_root / 'runs'} (or keep_runs is 0): "
                     "nothing is known to be in use, so no output is removed")
    candidates: dict[Path, Removal] = {}
    kept: list[Path] = []
    complete_outputs = 0
    for stage in stages:
        stage_dir = data_root / stage
        if not stage_dir.is_dir():
            continue
        for path in sorted(stage_dir.iterdir()):
            if not path.is_dir():
                continue
            if tmp_dir_owner(path.name):
                removal = _tmp_removal(path, now, tmp_min_age_s)
            elif not is_complete(path):
                idle = now - last_change(path)
                what = ("state kept to resume a build" if path.name.startswith(WORK_PREFIX)
                        else f"no {SUCCESS_MARKER}")
                removal = (Removal(path, "debris", f"{what}, untouched for {idle / 3600:.1f} h",
                                   tree_size(path)) if idle > tmp_min_age_s else None)
            elif not runs_considered or path.resolve() in in_use:
                complete_outputs += 1
                removal = None
                kept.append(path.resolve())
            else:
                complete_outputs += 1
                age = now - (path / SUCCESS_MARKER).stat().st_mtime
                if age > min_age_s:
                    removal = Removal(path, "output", f"not used by the last {keep_runs} run(s) nor one in "
                                      f"progress, built {age / 86400:.1f} days ago", 0)
                    candidates[path.resolve()] = removal
                    continue
                removal = None
                kept.append(path.resolve())
            if removal:
                plan.removals.append(removal)
    while kept:  # what a kept output was built from is kept too, all the way upstream
        for source in input_paths(kept.pop()):
            if candidates.pop(source, None) is not None:
                kept.append(source)
    plan.kept_outputs = complete_outputs - len(candidates)
    plan.removals.extend(Removal(r.path, r.kind, r.reason, tree_size(r.path)) for r in candidates.values())
    return plan


def apply_gc(plan: GcPlan) -> tuple[int, int]:
    """Remove what ``plan`` lists, except what changed since the plan; returns (removed, bytes).

    An output or a debris directory is checked again under its build lock (an output a run
    started since now uses is kept; debris a run has since replaced by a complete output is
    kept) and renamed aside before it is deleted, so a reader sees it whole or not at all."""
    removed = freed = 0
    for removal in plan.removals:
        if not removal.path.exists():
            continue
        target = removal.path
        if removal.kind in ("output", "debris"):
            target = removal.path.with_name(f".gc-{removal.path.name}-{os.getpid()}")
            try:
                with FileLock(lock_path(removal.path), timeout=0):
                    if not _still_removable(removal, plan):
                        continue
                    os.rename(removal.path, target)
            except Timeout:
                log.info("keeping %s: a run holds its lock", removal.path)
                continue
        shutil.rmtree(target, ignore_errors=True)
        log.info("removed %s (%s)", removal.path, removal.reason)
        removed += 1
        freed += removal.bytes
    return removed, freed


def _still_removable(removal: Removal, plan: GcPlan) -> bool:
    if removal.kind == "debris":
        return not is_complete(removal.path)
    in_use, _ = outputs_in_use(removal.path.parent.parent, plan.keep_runs, plan.stale_run_s, time.time())
    if removal.path.resolve() in in_use:
        log.info("keeping %s: a run started since the plan uses it", removal.path)
        return False
    return True
