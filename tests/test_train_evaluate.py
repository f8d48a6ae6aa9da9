"""Real DeepSpeed training on CPU (gloo), in worker processes, then evaluation."""

import json
import math

import pytest
import torch

from llm_core.config import EvaluateConfig, ModelConfig, TokenizerConfig, TrainConfig
from llm_core.errors import StageError
from llm_core.evaluate import REPORT_JSON, evaluate
from llm_core.tokenizer import TOKENIZER_FILE
from llm_core.tokenizer.train import SHARDS_DIR
from llm_core.train import MODEL_FILE, load_model, train
from helpers import tokenized_shakespeare

TINY = ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=64)


@pytest.fixture(scope="module")
def shards(shared_data, tmp_path_factory):
    out, _, _ = tokenized_shakespeare(shared_data, tmp_path_factory.mktemp("train"), TokenizerConfig(vocab_size=512))
    return out


def run_training(shards, tmp_path, **settings):
    settings = {"model": TINY, "micro_batch_size": 8, "grad_accum_steps": 2, "max_steps": 60, "lr": 3e-3,
                "warmup_steps": 5, "log_every": 10, **settings}
    config = TrainConfig(**settings)
    out = tmp_path / "train"
    out.mkdir()
    return config, out, train(config, shards / SHARDS_DIR, out)


def test_zero2_trains_and_evaluates(shards, tmp_path):
    config, out, stats = run_training(shards, tmp_path)
    curve = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve] == [10, 20, 30, 40, 50, 60]
    assert curve[-1]["loss"] < curve[0]["loss"] - 0.5, curve
    assert curve[-1]["lr"] < curve[1]["lr"], "cosine schedule decays"
    assert stats["world_size"] == 1 and stats["tokens_seen"] == 60 * 8 * 2 * 64
    assert (out / "checkpoint" / "final").is_dir()

    model = load_model(out / MODEL_FILE)
    assert model.config.vocab_size == 512

    eval_out = tmp_path / "eval"
    eval_out.mkdir()
    metrics = evaluate(EvaluateConfig(num_samples=2, sample_tokens=16), shards / TOKENIZER_FILE, shards / SHARDS_DIR,
                       out / MODEL_FILE, eval_out)
    assert math.isclose(metrics["perplexity"], math.exp(metrics["val_loss"]), rel_tol=1e-3)
    assert metrics["val_loss"] < math.log(512), "better than uniform over the vocabulary"
    assert 0.5 < metrics["bits_per_byte"] < 8
    report = json.loads((eval_out / REPORT_JSON).read_text())
    assert len(report["samples"]) == 2 and all(s["completion"] for s in report["samples"])


def test_zero3_two_processes_consolidates_the_model(shards, tmp_path):
    config, out, stats = run_training(shards, tmp_path, zero_stage=3, nproc_per_node=2)
    assert stats["world_size"] == 2
    state = torch.load(out / MODEL_FILE, weights_only=True)["state_dict"]
    assert state["transformer.h.0.attn.c_attn.weight"].shape == (3 * 64, 64), "full (unpartitioned) weights"


def test_a_killed_worker_is_a_retryable_stage_error(shards, tmp_path):
    """SIGKILL one training process mid-run (an OOM kill, a preempted node)."""
    import threading
    import time

    import psutil

    errors = []

    def run():
        try:
            run_training(shards, tmp_path, max_steps=10_000)
        except StageError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (tmp_path / "train" / "metrics.jsonl").is_file():
        time.sleep(0.2)
    def cmdline(process):  # other descendants (Spark's JVM and workers) may be exiting meanwhile
        try:
            return " ".join(process.cmdline())
        except psutil.Error:
            return ""

    workers = [p for p in psutil.Process().children(recursive=True)
               if "llm_core.train.worker" in cmdline(p) and "torch.distributed.run" not in cmdline(p)]
    assert workers, "no training worker found"
    workers[0].kill()
    thread.join(timeout=120)
    (error,) = errors
    assert "[train] training processes exited with code" in str(error)
    assert error.retryable


def test_too_little_data_for_one_window_is_a_clear_error(shards, tmp_path):
    with pytest.raises(StageError, match=r"\[train\] the largest training shard has \d+ tokens") as info:
        run_training(shards, tmp_path, model=ModelConfig(n_layer=1, n_head=1, n_embd=8, block_size=10**6))
    assert not info.value.retryable


def test_deepspeed_config_follows_the_train_config():
    from llm_core.train.ds_config import deepspeed_config

    config = TrainConfig(zero_stage=3, precision="bf16", grad_accum_steps=4, grad_clip=0.5, max_steps=100,
                         warmup_steps=10, lr=1e-3, min_lr=1e-4)
    ds = deepspeed_config(config)
    assert ds["zero_optimization"] == {"stage": 3}
    assert ds["bf16"]["enabled"] and not ds["fp16"]["enabled"]
    assert (ds["gradient_accumulation_steps"], ds["gradient_clipping"]) == (4, 0.5)
    assert ds["scheduler"]["params"]["cos_min_ratio"] == pytest.approx(0.1)
    assert ds["optimizer"]["params"]["torch_adam"] and "fused" not in ds["optimizer"]["params"]
    assert deepspeed_config(config, cuda=True)["optimizer"]["params"]["fused"] is True
    offload = deepspeed_config(config.model_copy(update={"offload_optimizer": True}), cuda=True)
    assert offload["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert not offload["optimizer"]["params"]["torch_adam"] and "fused" not in offload["optimizer"]["params"]
