"""Tiny pipeline, cold and warm: where the time goes.

Runs ``llmpipe demo --config configs/tiny.yaml`` twice as a user would (a subprocess each,
so Prefect's and Spark's start-up count), first on a fresh data directory (cold), then
again unchanged (warm: every stage cached). The last line printed is one JSON object:

    cold_s, warm_s          wall time of each whole run
    stage_s                 {stage: seconds} as each stage measured its own work (cold run)
    overhead_s              cold_s - sum(stage_s): process start, Prefect, MLflow, registration
    warm_over_cold          warm_s / cold_s (the cache's effect; lower is better)

DeepSpeed's JIT-compiled ops are cached in the venv after their first build (~30 s), so a
"cold" run here is cold for the pipeline's data, not for a never-used machine.
Usage: .venv/bin/python benchmarks/pipeline.py [--config configs/tiny.yaml] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llm_core.config import load_config  # noqa: E402
from llm_core.stages import plan  # noqa: E402


def timed_run(config: Path, overrides: list[str]) -> float:
    args = [sys.executable, "-m", "flows.cli", "demo", "--config", str(config)]
    for item in overrides:
        args += ["--set", item]
    started = time.perf_counter()
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"pipeline failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "tiny.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    data_root = REPO / "benchmarks" / "out" / "pipeline"
    shutil.rmtree(data_root, ignore_errors=True)
    overrides = [f"project.data_root={data_root}", *args.overrides]
    config = load_config(args.config, overrides)

    cold_s = timed_run(args.config, overrides)
    stage_s = {}
    for planned in plan(config.for_run()):
        stats = json.loads((planned.path / "stats.json").read_text())
        stage_s[planned.stage] = stats["wall_s"]
    warm_s = timed_run(args.config, overrides)

    figures = {
        "benchmark": "pipeline",
        "config": str(args.config.relative_to(REPO)) if args.config.is_relative_to(REPO) else str(args.config),
        "overrides": args.overrides,
        "cold_s": round(cold_s, 1),
        "warm_s": round(warm_s, 1),
        "stage_s": {k: round(v, 1) for k, v in stage_s.items()},
        "overhead_s": round(cold_s - sum(stage_s.values()), 1),
        "warm_over_cold": round(warm_s / cold_s, 3),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
