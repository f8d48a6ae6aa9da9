import json

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
    assert list((tmp_path / "dedupe").iterdir()) == []


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
