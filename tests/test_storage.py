import json
from pathlib import Path

import pytest

from llm_core.config import DedupeConfig
from llm_core.storage import SUCCESS_MARKER, is_complete, materialize, stage_key


def test_key_depends_on_config_inputs_and_version():
    base = stage_key("dedupe", DedupeConfig(), ["a"], "1")
    assert base == stage_key("dedupe", DedupeConfig(), ["a"], "1")
    assert base != stage_key("dedupe", DedupeConfig(threshold=0.7), ["a"], "1")
    assert base != stage_key("dedupe", DedupeConfig(), ["b"], "1")
    assert base != stage_key("dedupe", DedupeConfig(), ["a"], "2")


def test_output_is_built_once(tmp_path):
    calls = []

    def build(out):
        calls.append(out)
        (out / "data.txt").write_text("hello")
        return {"docs_out": 1}

    first = materialize(tmp_path, "dedupe", DedupeConfig(), [], "1", build)
    second = materialize(tmp_path, "dedupe", DedupeConfig(), [], "1", build)
    assert len(calls) == 1
    assert not first.reused and second.reused
    assert first.model_copy(update={"reused": True}) == second
    assert (first.path / "data.txt").read_text() == "hello"
    assert json.loads((first.path / "stats.json").read_text())["docs_out"] == 1
    assert is_complete(first.path)


def test_failed_build_leaves_nothing(tmp_path):
    def build(out):
        (out / "half.parquet").write_text("partial")
        raise RuntimeError("killed mid-stage")

    with pytest.raises(RuntimeError):
        materialize(tmp_path, "dedupe", DedupeConfig(), [], "1", build)
    assert [p.name for p in (tmp_path / "dedupe").iterdir()] == [f".{stage_key('dedupe', DedupeConfig(), [], '1')}.lock"]


def test_directory_without_marker_is_rebuilt(tmp_path):
    key = stage_key("dedupe", DedupeConfig(), [], "1")
    debris = tmp_path / "dedupe" / key
    debris.mkdir(parents=True)
    (debris / "stale.txt").write_text("from a crash")
    out = materialize(tmp_path, "dedupe", DedupeConfig(), [], "1", lambda out: {"docs_out": 0})
    assert not (out.path / "stale.txt").exists()
    assert (out.path / SUCCESS_MARKER).is_file()


def test_partial_output_of_a_dead_process_is_removed(tmp_path):
    import socket
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    key = stage_key("dedupe", DedupeConfig(), [], "1")
    (tmp_path / "dedupe").mkdir()
    abandoned = tmp_path / "dedupe" / f".tmp-{key}-{socket.gethostname()}-{dead.pid}-abcd1234"
    alive = tmp_path / "dedupe" / f".tmp-{key}-{socket.gethostname()}-1-abcd1234"  # pid 1 is alive
    other_host = tmp_path / "dedupe" / f".tmp-{key}-elsewhere-{dead.pid}-abcd1234"
    for d in (abandoned, alive, other_host):
        d.mkdir()
    materialize(tmp_path, "dedupe", DedupeConfig(), [], "1", lambda out: {})
    assert not abandoned.exists()
    assert alive.exists() and other_host.exists(), "only this host's dead processes are cleaned up"


RACER = """
import json, os, sys, time
from pathlib import Path
from llm_core.config import DedupeConfig
from llm_core.storage import materialize

root, log = Path(sys.argv[1]), Path(sys.argv[2])

def build(out):
    with log.open("a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(3)  # long enough that the other process arrives while this one builds
    (out / "data.txt").write_text("built by " + str(os.getpid()))
    return {"builder": os.getpid()}

out = materialize(root, "dedupe", DedupeConfig(), [], "1", build)
print(json.dumps({"pid": os.getpid(), "reused": out.reused, "path": str(out.path)}))
"""


def test_two_processes_racing_for_one_output_build_it_once(tmp_path):
    """Two runs of one config (two workers, a schedule and a CLI run): one builds, the other
    waits for its lock and reuses the output; nothing complete is removed."""
    import subprocess
    import sys

    builds = tmp_path / "builds.log"
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path / "data"), str(builds)],
                               stdout=subprocess.PIPE, text=True) for _ in range(2)]
    results = [json.loads(r.communicate(timeout=120)[0]) for r in racers]
    assert all(r.returncode == 0 for r in racers)
    assert len(builds.read_text().split()) == 1, "built once"
    assert sorted(r["reused"] for r in results) == [False, True]
    (path,) = {r["path"] for r in results}
    builder = next(r["pid"] for r in results if not r["reused"])
    assert (Path(path) / "data.txt").read_text() == f"built by {builder}"
    assert is_complete(Path(path))
    assert not list((tmp_path / "data" / "dedupe").glob(".tmp-*"))
