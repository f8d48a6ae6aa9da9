"""Training that survives and explains itself: resume after a kill, non-finite losses caught at
their step, early stopping, continued training, live monitoring. Real DeepSpeed on CPU (gloo)."""

import json
import math
from pathlib import Path

import pytest

from llm_core.config import ModelConfig, TrainConfig
from llm_core.errors import StageError
from llm_core.tokenizer.train import SHARDS_DIR
from llm_core.train import MODEL_FILE, train
from llm_core.train.init import initial_weights
from llm_core.train.schedule import lr_at
from llm_core.train.guards import FAULT_ENV
from llm_core.train.monitor import METRICS_FILE

TINY = ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=32)
BASE = dict(model=TINY, micro_batch_size=4, grad_accum_steps=2, max_steps=30, lr=3e-3, warmup_steps=3,
            log_every=5, tensorboard=False)


@pytest.fixture(scope="module")
def shards(tokenized):
    out = tokenized(vocab_size=512)
    return out / SHARDS_DIR


def run(shards, out, fault=None, monkeypatch=None, work=None, init=None, **settings):
    config = TrainConfig(**{**BASE, **settings})
    out.mkdir(parents=True, exist_ok=True)
    if monkeypatch is not None:
        if fault:
            monkeypatch.setenv(FAULT_ENV, fault)
        else:
            monkeypatch.delenv(FAULT_ENV, raising=False)
    return train(config, shards, out, work, init)


def curve(path):
    return {r["step"]: r for r in map(json.loads, path.read_text().splitlines())}


@pytest.fixture(scope="module")
def uninterrupted(shards, tmp_path_factory):
    """30 steps, checkpoints every 10: the curve a resumed run must follow."""
    out = tmp_path_factory.mktemp("whole") / "train"
    stats = run(shards, out, checkpoint={"every_steps": 10})
    return out, stats


def test_a_killed_run_resumes_on_the_same_loss_curve(shards, tmp_path, monkeypatch, uninterrupted):
    """kill -9 at step 25: the retry resumes from step 20's checkpoint (model, optimizer,
    scheduler, data position, RNG) and its next losses are the uninterrupted run's."""
    out, work = tmp_path / "train", tmp_path / "work"
    with pytest.raises(StageError, match="exited with code") as info:
        run(shards, out, "kill@25", monkeypatch, work, checkpoint={"every_steps": 10})
    assert info.value.retryable
    assert sorted(p.name for p in (work / "checkpoints").glob("step-*")) == ["step-00000010", "step-00000020"]

    stats = run(shards, tmp_path / "train2", None, monkeypatch, work, checkpoint={"every_steps": 10, "keep_last": 1})
    assert stats["resumed_from_steps"] == [20] and stats["steps"] == 30
    whole, resumed = curve(uninterrupted[0] / METRICS_FILE), curve(tmp_path / "train2" / METRICS_FILE)
    assert sorted(resumed) == [5, 10, 15, 20, 25, 30], "history before the checkpoint kept, after it retrained once"
    for step in (25, 30):
        assert math.isclose(resumed[step]["loss"], whole[step]["loss"], abs_tol=1e-4), (step, resumed[step], whole[step])
        assert math.isclose(resumed[step]["lr"], whole[step]["lr"], rel_tol=1e-9)


def test_a_non_finite_loss_stops_the_run_at_its_step(shards, tmp_path, monkeypatch):
    with pytest.raises(StageError) as info:
        run(shards, tmp_path / "train", "nan_loss@7", monkeypatch, tmp_path / "work", checkpoint={"every_steps": 5})
    message = str(info.value)
    assert "non-finite loss at step 7" in message and "step-00000005" in message and "(step 5)" in message
    assert not info.value.retryable, "the same data fails again"


def test_a_non_finite_loss_can_be_skipped(shards, tmp_path, monkeypatch):
    stats = run(shards, tmp_path / "train", "nan_loss@4", monkeypatch, max_steps=8, on_nonfinite="skip")
    assert stats["skipped_batches"] == 1 and stats["steps"] == 8 and math.isfinite(stats["final_loss"])


def test_a_non_finite_gradient_rolls_back_with_a_lower_rate(shards, tmp_path, monkeypatch):
    stats = run(shards, tmp_path / "train", "nan_grad@12", monkeypatch, max_steps=20, on_nonfinite="rollback",
                checkpoint={"every_steps": 10}, schedule="constant", warmup_steps=0)
    assert stats["rollbacks"] == 1 and stats["steps"] == 20 and math.isfinite(stats["final_loss"])
    lrs = [r["lr"] for r in curve(tmp_path / "train" / METRICS_FILE).values()]
    assert lrs[-1] == pytest.approx(3e-3 * 0.5), "the rate after the rollback"


def test_a_rollback_in_the_middle_of_an_accumulated_step(shards, tmp_path, monkeypatch):
    """The NaN comes at the second micro-batch of a step: the step is closed before the rollback,
    so DeepSpeed's accumulation stays in step with ours (no optimizer step mid-way afterwards)."""
    stats = run(shards, tmp_path / "train", "nan_loss@12.1", monkeypatch, max_steps=20, on_nonfinite="rollback",
                checkpoint={"every_steps": 10})
    assert stats["rollbacks"] == 1 and stats["steps"] == 20 and math.isfinite(stats["final_loss"])


def test_early_stopping_exports_the_best_checkpoint(shards, tmp_path, monkeypatch):
    """An impossible min_delta: the second validation is no improvement, patience 1 stops there,
    and the weights of the first (the best) are exported."""
    from llm_core.train import load_model

    stats = run(shards, tmp_path / "train", None, monkeypatch, validation={"every_steps": 4, "batches": 2,
                                                                          "patience": 1, "min_delta": 100.0})
    assert stats["stopped_by"] == "early_stopping" and stats["steps"] == 8
    assert stats["exported_step"] == 4 and stats["best_step"] == 4
    records = curve(tmp_path / "train" / METRICS_FILE)
    assert "val_loss" in records[4] and "val_loss" in records[8]
    assert load_model(tmp_path / "train" / MODEL_FILE).config.n_embd == 32


def test_continued_training_starts_from_an_earlier_output(shards, tmp_path, monkeypatch, uninterrupted):
    earlier, earlier_stats = uninterrupted
    init = initial_weights(str(earlier), tmp_path / "work")
    stats = run(shards, tmp_path / "train", None, monkeypatch, init=init, max_steps=5, warmup_steps=1)
    first = curve(tmp_path / "train" / METRICS_FILE)[5]["loss"]
    assert first < earlier_stats["final_loss"] + 0.3, "starts where the earlier run ended, not from scratch"
    assert stats["lineage"]["init_from"] == str(earlier)

    with pytest.raises(StageError, match=r"another shape than this run's model \(n_embd: 32 there, 64 here"):
        run(shards, tmp_path / "other", init=init, model=TINY.model_copy(update={"n_embd": 64}))


def test_continued_training_from_a_registered_model(shards, tmp_path, monkeypatch, uninterrupted):
    import mlflow

    from llm_core import registry, tracking
    from llm_core.config import ProjectConfig

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking.configure(ProjectConfig(data_root=str(tmp_path / "data"), mlflow_experiment="continued"))
    earlier, _ = uninterrupted
    with mlflow.start_run():
        version, _ = registry.register_model("parent-gpt", "k1", earlier / MODEL_FILE, shards.parent / "tokenizer.json",
                                             {"bits_per_byte": 3.0})
    mlflow.MlflowClient().set_registered_model_alias("parent-gpt", "champion", str(version))
    init = initial_weights("models:/parent-gpt@champion", tmp_path / "work")
    assert init.lineage["parent_model"] == "parent-gpt" and init.lineage["parent_model_version"] == str(version)
    stats = run(shards, tmp_path / "train", None, monkeypatch, init=init, max_steps=2, warmup_steps=1)
    assert stats["lineage"]["parent_model_version"] == str(version)
    with pytest.raises(StageError, match="models:/parent-gpt/99: not found in the registry"):
        initial_weights("models:/parent-gpt/99", tmp_path / "work")
    with pytest.raises(StageError, match="name a registered model as"):
        initial_weights("models:/parent-gpt", tmp_path / "work")


def test_metrics_are_logged_live_to_mlflow_and_tensorboard(shards, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from llm_core import tracking
    from llm_core.config import ProjectConfig
    from llm_core.train.monitor import LIVE_RUN_ENV

    uri = tracking.configure(ProjectConfig(data_root=str(tmp_path / "data"), mlflow_experiment="live"))
    client = MlflowClient()
    run_id = client.create_run(client.get_experiment_by_name("live").experiment_id).info.run_id
    monkeypatch.setenv(LIVE_RUN_ENV, run_id)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    stats = run(shards, tmp_path / "train", None, monkeypatch, max_steps=10, tensorboard=True)
    assert stats["logged_live"]
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [5, 10]
    assert {"train/lr", "train/grad_norm", "train/tokens_per_s", "train/peak_memory_mb"} <= set(
        client.get_run(run_id).data.metrics)
    assert list((tmp_path / "train" / "tensorboard").glob("events.out.tfevents.*"))


def test_bad_settings_fail_before_any_worker_starts(shards, tmp_path):
    with pytest.raises(StageError, match="global_batch_size 10 is not a multiple of micro_batch_size 4"):
        run(shards, tmp_path / "a", global_batch_size=10)
    with pytest.raises(StageError, match="does not exist"):
        initial_weights(str(tmp_path / "nowhere"), tmp_path / "work")
    with pytest.raises(ValueError, match="offload_params needs zero_stage 3"):
        TrainConfig(offload_params=True, zero_stage=2)
    assert not (tmp_path / "a" / "train.log").exists(), "no worker started"


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant", "wsd"])
def test_schedules_warm_up_then_follow_their_shape(schedule):
    config = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110, schedule=schedule, decay_fraction=0.5)
    lrs = [lr_at(s, config) for s in range(110)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0), "linear warmup"
    assert all(lr <= 1.0 for lr in lrs)
    end = {"cosine": 0.1, "linear": 0.1, "constant": 1.0, "wsd": 0.1}[schedule]
    assert lrs[-1] == pytest.approx(end, abs=0.02)
    if schedule == "wsd":
        assert lrs[54] == 1.0 and lrs[56] < 1.0, "stable, then decays over the last half"
    if schedule == "cosine":
        assert lrs[60] == pytest.approx(0.55, abs=0.01), "half way: the mean of peak and floor"


MATRIX_RUN = """
import json, sys
import deepspeed, torch.distributed as dist
from llm_core.train.worker import Trainer
deepspeed.init_distributed(dist_backend="gloo")
for job in json.loads(open(sys.argv[1]).read()):
    Trainer(job).run()
dist.destroy_process_group()
"""

# Every technique that runs on CPU, each in some combination (3 steps each, 2 processes, one
# torchrun for all: a process start costs more than the steps). Offload compiles DeepSpeed's
# CPU Adam once (~40-90 s on a fresh machine).
MATRIX = {
    "zero0-fp32-lamb-cosine-accum2-clip": dict(zero_stage=0, precision="fp32", optimizer="lamb"),
    "zero0-bf16-lamb-linear": dict(zero_stage=0, precision="bf16", optimizer="lamb", schedule="linear"),
    "zero1-bf16-adamw-wsd": dict(zero_stage=1, precision="bf16", schedule="wsd"),
    "zero2-fp32-adamw-constant-profiled": dict(zero_stage=2, schedule="constant", profile=True),
    "zero2-bf16-adamw-noclip-accum1": dict(zero_stage=2, precision="bf16", grad_clip=0.0, grad_accum_steps=1),
    "zero3-fp32-adamw": dict(zero_stage=3),
    "zero3-bf16-offload-optimizer-and-params": dict(zero_stage=3, precision="bf16", offload_optimizer=True,
                                                    offload_params=True),
}


@pytest.mark.slow
def test_every_cpu_technique_trains_on_two_processes(shards, tmp_path):
    """ZeRO 0-3, offload, bf16 and fp32, accumulation, clipping, AdamW and LAMB, each schedule:
    each trains (finite losses), exports a full model, and under ZeRO 0-2 both data-parallel
    ranks end with identical parameters."""
    import os
    import subprocess
    import sys

    from llm_core.train import load_model
    from llm_core.train.worker import TRACE_FILE

    jobs = []
    for name, settings in MATRIX.items():
        config = TrainConfig(**{**BASE, "max_steps": 6, "warmup_steps": 2, "log_every": 3, **settings})
        (tmp_path / name).mkdir()
        jobs.append({"config": config.model_dump(mode="json"), "shards_dir": str(shards),
                     "out_dir": str(tmp_path / name), "work_dir": str(tmp_path / name / "work"), "init_file": None})
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1",
           "TORCH_EXTENSIONS_DIR": str(Path(sys.prefix) / "torch_extensions")}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "--no-python", sys.executable, "-c", MATRIX_RUN, str(tmp_path / "jobs.json")],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    for name, settings in MATRIX.items():
        stats = json.loads((tmp_path / name / "train_stats.json").read_text())
        losses = [r["loss"] for r in curve(tmp_path / name / METRICS_FILE).values()]
        assert stats["steps"] == 6 and stats["world_size"] == 2 and all(map(math.isfinite, losses)), (name, losses)
        assert stats["global_batch_size"] == 4 * settings.get("grad_accum_steps", 2) * 2
        if settings["zero_stage"] < 3:
            assert len(set(stats["replica_digests"])) == 1, f"{name}: the ranks' parameters differ"
        assert load_model(tmp_path / name / MODEL_FILE).config.n_embd == 32
        last = list(curve(tmp_path / name / METRICS_FILE).values())[-1]
        assert math.isfinite(last["grad_norm"]), f"{name}: the gradient norm is measured"
        if settings.get("optimizer") == "lamb" and settings["precision"] == "fp32":
            assert 0.01 <= last["lamb_trust_ratio"] <= 10, "LAMB's mean trust ratio is logged"
    profiled = tmp_path / "zero2-fp32-adamw-constant-profiled"
    assert "Flops Profiler" in (profiled / "flops_profile.txt").read_text()
    assert json.loads((profiled / TRACE_FILE).read_text())["traceEvents"], "a torch.profiler trace"


def test_a_retried_train_stage_resumes_from_its_own_checkpoints(shards, tmp_path, monkeypatch):
    """Through the stage (what a retried Prefect task calls): the first attempt dies at step 15,
    the retry resumes from step 10's checkpoint in the output's work folder, and once the
    output is published the work folder is gone."""
    from llm_core.config import parse_config
    from llm_core.stages import run_stage
    from llm_core.storage import StageOutput, WORK_PREFIX

    tokenizer = StageOutput(stage="tokenizer", key="t" * 16, path=shards.parent, stats={})
    config = parse_config({"project": {"data_root": str(tmp_path / "data")},
                           "train": {**BASE, "model": TINY.model_dump(), "max_steps": 20,
                                     "checkpoint": {"every_steps": 10}}}).for_run()
    monkeypatch.setenv(FAULT_ENV, "kill@15")
    with pytest.raises(StageError) as info:
        run_stage("train", config, {"tokenizer": tokenizer})
    assert info.value.retryable
    (work,) = (tmp_path / "data" / "train").glob(f"{WORK_PREFIX}*")
    assert (work / "checkpoints" / "step-00000010").is_dir()

    monkeypatch.delenv(FAULT_ENV)
    output = run_stage("train", config, {"tokenizer": tokenizer})
    assert output.stats["resumed_from_steps"] == [10] and output.stats["steps"] == 20
    assert not work.exists(), "the work folder goes once the output is in place"
    assert (output.path / MODEL_FILE).is_file()
