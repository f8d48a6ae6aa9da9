"""The record of pipeline runs: which outputs each run used.

Every pipeline run writes ``<data_root>/runs/<started>-<run id>.json`` when it starts
(with every output it is going to use: their keys are known before anything runs), after
each stage and when it ends (``state``: running, completed, failed; the host and process
that run it). ``llmpipe gc`` keeps what the last runs used and everything a run still in
progress uses, however many runs started since.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RUNS_DIR = "runs"


def runs_dir(data_root: Path) -> Path:
    return Path(data_root) / RUNS_DIR


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def record_run(data_root: Path, run_id: str, started_at: datetime, outputs: dict[str, Path],
               state: str, status: dict[str, str] | None = None, name: str | None = None) -> Path:
    """Write (or rewrite) one run's record; ``outputs`` maps each stage to its output path."""
    directory = runs_dir(data_root)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{started_at.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{run_id}.json"
    record = {
        "run_id": run_id, "name": name, "started_at": started_at.isoformat(), "state": state,
        "updated_at": datetime.now(timezone.utc).isoformat(), "host": socket.gethostname(), "pid": os.getpid(),
        "outputs": {stage: str(p) for stage, p in outputs.items()}, "status": status or {},
    }
    write_atomically(path, json.dumps(record, indent=2))
    return path


def recorded_runs(data_root: Path) -> list[dict[str, Any]]:
    """Every readable run record, newest first (a damaged record is skipped, not fatal)."""
    records = []
    for path in runs_dir(data_root).glob("*.json"):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(records, key=lambda r: r.get("started_at", ""), reverse=True)
