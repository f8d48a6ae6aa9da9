"""Two training "nodes" on one machine, met through torchrun's c10d rendezvous on 127.0.0.1:
the stage runs one, ``llmpipe train-node`` the other, and the run equals one node with two
processes. A node that never joins, a rendezvous address of another machine: clear errors."""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from conftest import free_port
from llm_core.config import ModelConfig, TrainConfig
from llm_core.errors import StageError
from llm_core.tokenizer.train import SHARDS_DIR
from llm_core.train import MODEL_FILE, load_model, train

LLMPIPE = str(Path(sys.executable).with_name("llmpipe"))
SETTINGS = dict(model=ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=32), micro_batch_size=4,
                grad_accum_steps=1, max_steps=8, warmup_steps=1, log_every=4, zero_stage=2,
                checkpoint={"every_steps": 4})


@pytest.fixture(scope="module")
def shards(tokenized):
    return tokenized(vocab_size=512) / SHARDS_DIR


def losses(out):
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_two_nodes_train_as_one_node_with_two_processes(shards, tmp_path):
    reference = tmp_path / "one-node"
    reference.mkdir()
    train(TrainConfig(**SETTINGS, nproc_per_node=2), shards, reference)

    out = tmp_path / "two-nodes" / "train-build"
    out.mkdir(parents=True)
    config = TrainConfig(**SETTINGS, nodes={"count": 2, "rendezvous": f"127.0.0.1:{free_port()}",
                                            "join_timeout_s": 120})
    result: dict = {}

    def stage():  # node 0: the train stage, hosting the rendezvous
        try:
            result["stats"] = train(config, shards, out)
        except Exception as exc:  # noqa: BLE001 (reported by the assertion below)
            result["error"] = exc

    node0 = threading.Thread(target=stage)
    node0.start()
    deadline = time.monotonic() + 60
    while not (out / "job.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    node1 = subprocess.run([LLMPIPE, "train-node", str(out / "job.json")], capture_output=True, text=True,
                           timeout=300)
    node0.join(timeout=300)
    assert node1.returncode == 0, node1.stderr[-3000:]
    assert "error" not in result, result.get("error")
    assert result["stats"]["world_size"] == 2
    assert losses(out) == pytest.approx(losses(reference), abs=1e-5)
    assert (out / "checkpoint" / "final").is_dir(), "the same checkpoint format as one node"
    for name, tensor in load_model(reference / MODEL_FILE).state_dict().items():
        torch.testing.assert_close(load_model(out / MODEL_FILE).state_dict()[name], tensor, atol=1e-5, rtol=0)


def test_a_node_that_never_joins_is_a_clear_error(shards, tmp_path):
    config = TrainConfig(**SETTINGS, nodes={"count": 2, "rendezvous": f"127.0.0.1:{free_port()}", "join_timeout_s": 5})
    started = time.monotonic()
    with pytest.raises(StageError, match=r"not every node joined the rendezvous .* within 5 s.*llmpipe train-node"):
        train(config, shards, tmp_path)
    assert time.monotonic() - started < 120


def test_a_rendezvous_on_another_machine_is_refused_before_training(shards, tmp_path):
    config = TrainConfig(**SETTINGS, nodes={"count": 2, "rendezvous": "192.0.2.1:29400"})  # TEST-NET-1
    with pytest.raises(StageError, match="192.0.2.1 is not an address of this machine"):
        train(config, shards, tmp_path)
    assert not (tmp_path / "job.json").exists()
    with pytest.raises(ValueError, match="needs train.nodes.rendezvous"):
        TrainConfig(nodes={"count": 2})


def test_train_node_refuses_a_single_node_job(tmp_path):
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"config": TrainConfig().model_dump(mode="json"), "out_dir": str(tmp_path),
                               "work_dir": str(tmp_path / "work"), "shards_dir": str(tmp_path)}))
    done = subprocess.run([LLMPIPE, "train-node", str(job)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "single-node job" in done.stderr
