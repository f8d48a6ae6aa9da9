"""``llmpipe gc``: outputs no recent run used, and leftovers of dead runs; a dry run by default."""

import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from llm_core.config import STAGES, DedupeConfig
from llm_core.gc import apply_gc, plan_gc
from llm_core.runs import record_run
from llm_core.storage import load_output, materialize

REPO = Path(__file__).resolve().parents[1]
DAY = 86400


def built(root: Path, threshold: float) -> Path:
    out = materialize(root, "dedupe", DedupeConfig(threshold=threshold), [], "1",
                      lambda d: (d / "docs.txt").write_text("x" * 1000) and {})
    return out.path


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    for p in [path, *path.rglob("*")]:
        os.utime(p, (then, then))


def test_gc_keeps_what_recent_runs_used_and_removes_the_rest(tmp_path):
    root = tmp_path / "data"
    old, recent, fresh = built(root, 0.5), built(root, 0.6), built(root, 0.7)
    for path in (old, recent):
        age(path, 3 * DAY)
    start = datetime.now(timezone.utc)
    record_run(root, "run-a", start - timedelta(days=3), {"dedupe": old}, state="completed")
    record_run(root, "run-b", start - timedelta(days=1), {"dedupe": recent}, state="completed")
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = root / "dedupe" / f".tmp-{old.name}-{socket.gethostname()}-{dead.pid}-abcd1234"
    other_host_stale = root / "dedupe" / f".tmp-{old.name}-node-7-{dead.pid}-abcd1234"
    other_host_live = root / "dedupe" / f".tmp-{old.name}-node-8-{dead.pid}-abcd1234"
    for d in (orphan, other_host_stale, other_host_live):
        d.mkdir()
        (d / "part.parquet").write_text("partial")
    age(other_host_stale, 2 * DAY)

    plan = plan_gc(root, STAGES, keep_runs=1, min_age_s=3600, tmp_min_age_s=DAY)
    assert sorted((r.kind, str(r.path)) for r in plan.removals) == sorted(
        [("output", str(old)), ("tmp", str(orphan)), ("tmp", str(other_host_stale))])
    assert plan.kept_outputs == 2  # recent: used by the last run; fresh: built within the hour
    assert all(p.exists() for p in (old, orphan, other_host_stale)), "planning removes nothing"

    removed, freed = apply_gc(plan)
    assert removed == 3 and freed > 1000
    assert not old.exists() and not orphan.exists() and not other_host_stale.exists()
    assert recent.exists() and fresh.exists() and other_host_live.exists()
    assert not list((root / "dedupe").glob(".gc-*"))


def test_without_any_recorded_run_no_output_is_removed(tmp_path):
    root = tmp_path / "data"
    path = built(root, 0.5)
    age(path, 30 * DAY)
    plan = plan_gc(root, STAGES, keep_runs=5, min_age_s=0)
    assert plan.removals == [] and "no pipeline run is recorded" in plan.note


def test_llmpipe_gc_is_a_dry_run_unless_told(tmp_path, capsys):
    from flows.cli import main

    root = tmp_path / "data"
    old = built(root, 0.5)
    age(old, 3 * DAY)
    record_run(root, "run-a", datetime.now(timezone.utc), {"dedupe": built(root, 0.6)}, state="completed")
    args = ["gc", "--config", str(REPO / "configs" / "tiny.yaml"), "--set", f"project.data_root={root}"]

    # The dry run as a user runs it (a subprocess); the others in this process, same command.
    dry = subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert str(old) in dry.stdout and "dry run: nothing removed" in dry.stdout
    assert old.exists()
    assert main([*args, "--apply"]) == 0
    assert "removed 1" in capsys.readouterr().out and not old.exists()
    assert main([*args, "--older-than", "soon"]) == 1


def test_gc_keeps_what_a_run_in_progress_uses_and_what_kept_outputs_were_built_from(tmp_path):
    """A long run in progress is kept however many runs started since; an input of a kept output is kept."""
    root = tmp_path / "data"
    crawl_like = built(root, 0.5)
    long_run = built(root, 0.6)
    downstream = materialize(root, "filter", DedupeConfig(), [load_output("dedupe", crawl_like.name, crawl_like)],
                             "1", lambda d: {})
    for path in (crawl_like, long_run, downstream.path):
        age(path, 3 * DAY)
    now = datetime.now(timezone.utc)
    record_run(root, "long", now - timedelta(days=3), {"dedupe": long_run}, state="running")  # this process: alive
    for i in range(3):
        record_run(root, f"later-{i}", now - timedelta(hours=i + 1), {}, state="completed")
    record_run(root, "newest", now, {"filter": downstream.path}, state="completed")
    plan = plan_gc(root, STAGES, keep_runs=1, min_age_s=3600)
    assert plan.removals == [], [r.path for r in plan.removals]
    assert plan.kept_outputs == 3

    # The run dies without updating its record: after its process is gone, its outputs are free.
    dead = subprocess.Popen(["true"])
    dead.wait()
    record = next((root / "runs").glob("*-long.json"))
    record.write_text(record.read_text().replace(f'"pid": {os.getpid()}', f'"pid": {dead.pid}'))
    assert [r.path for r in plan_gc(root, STAGES, keep_runs=1, min_age_s=3600).removals] == [long_run]


def test_debris_replaced_by_a_complete_output_since_the_plan_is_kept(tmp_path):
    root = tmp_path / "data"
    record_run(root, "run-a", datetime.now(timezone.utc), {}, state="completed")
    debris = root / "dedupe" / "0123456789abcdef"
    debris.mkdir(parents=True)
    (debris / "half.parquet").write_text("partial")
    age(debris, 2 * DAY)
    plan = plan_gc(root, STAGES, tmp_min_age_s=DAY)
    assert [(r.kind, r.path) for r in plan.removals] == [("debris", debris)]
    (debris / "stats.json").write_text("{}")  # a run rebuilt it meanwhile
    (debris / "_SUCCESS").write_text("done")
    assert apply_gc(plan) == (0, 0) and (debris / "_SUCCESS").is_file()
