"""Model parallelism through the train stage: 2 pipeline stages, and 2-way tensor parallelism,
each as 2 DeepSpeed worker processes (gloo), against the same run in one process: the same
losses and the same exported model. Settings that cannot work are refused before any worker."""

import json

import pytest
import torch

from llm_core.config import ModelConfig, TrainConfig
from llm_core.errors import StageError
from llm_core.tokenizer.train import SHARDS_DIR
from llm_core.train import MODEL_FILE, load_model, train

SETTINGS = dict(model=ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=64), micro_batch_size=4,
                grad_accum_steps=2, max_steps=12, lr=3e-3, warmup_steps=2, log_every=4, zero_stage=1,
                validation={"every_steps": 6, "batches": 2}, checkpoint={"every_steps": 6})


@pytest.fixture(scope="module")
def shards(tokenized):
    return tokenized(vocab_size=512) / SHARDS_DIR


@pytest.fixture(scope="module")
def single(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    train(TrainConfig(**SETTINGS), shards, out)
    return out


def curve(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("parallel", [{"pipeline_stages": 2}, {"tensor_parallel": 2}], ids=["pipeline", "tensor"])
def test_two_processes_train_as_one(shards, single, tmp_path, parallel):
    stats = train(TrainConfig(**SETTINGS, **parallel, nproc_per_node=2), shards, tmp_path)
    assert stats["world_size"] == 2 and stats["tokens_per_step"] == 4 * 2 * 64, "one copy of the model: no data parallel"
    ours, reference = curve(tmp_path), curve(single)
    assert [r["step"] for r in ours] == [r["step"] for r in reference]
    for a, b in zip(ours, reference):
        for figure in ("loss", "grad_norm", "val_loss"):
            if figure in b:
                assert a[figure] == pytest.approx(b[figure], abs=1e-4), (figure, a, b)
    exported, expected = load_model(tmp_path / MODEL_FILE), load_model(single / MODEL_FILE)
    for name, tensor in expected.state_dict().items():
        torch.testing.assert_close(exported.state_dict()[name], tensor, atol=1e-4, rtol=0)


@pytest.mark.parametrize("settings,message", [
    ({"pipeline_stages": 3}, r"pipeline_stages \(3\) must divide model.n_layer \(2\)"),
    ({"pipeline_stages": 2, "zero_stage": 2}, "ZeRO-2 and ZeRO-3 are incompatible"),
    ({"pipeline_stages": 2, "model": ModelConfig(family="bert", n_layer=2)}, "needs model.family gpt"),
    ({"pipeline_stages": 2, "zero_stage": 1, "on_nonfinite": "skip"}, "use stop or rollback"),
    ({"tensor_parallel": 3, "model": ModelConfig(n_head=4, n_embd=64)}, r"tensor_parallel \(3\) must divide"),
    ({"tensor_parallel": 2, "pipeline_stages": 2, "model": ModelConfig(n_layer=2)}, "together are not supported"),
])
def test_parallel_settings_that_cannot_work_are_config_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)


def test_processes_that_do_not_split_into_pipelines_fail_before_training(shards, tmp_path):
    config = TrainConfig(**{**SETTINGS, "pipeline_stages": 2, "nproc_per_node": 3})
    with pytest.raises(StageError, match="3 processes do not split into groups of pipeline_stages 2"):
        train(config, shards, tmp_path)
    assert not (tmp_path / "job.json").exists()
