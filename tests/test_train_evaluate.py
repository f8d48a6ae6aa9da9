"""Real DeepSpeed training on CPU (gloo), in worker processes, then evaluation."""

import json
import math

import pytest
import torch

from llm_core.config import EvaluateConfig, ModelConfig, TrainConfig
from llm_core.errors import StageError
from llm_core.evaluate import REPORT_JSON, evaluate
from llm_core.tokenizer import TOKENIZER_FILE
from llm_core.tokenizer.train import SHARDS_DIR
from llm_core.train import MODEL_FILE, load_model, train
from llm_core.train.processes import failure_is_transient

TINY = ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=64)


@pytest.fixture(scope="module")
def shards(tokenized):
    out = tokenized(vocab_size=512)
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
                       out / MODEL_FILE, eval_out, history_file=out / "metrics.jsonl")
    assert math.isclose(metrics["perplexity"], math.exp(metrics["val_loss"]), rel_tol=1e-3)
    assert metrics["val_loss"] < math.log(512), "better than uniform over the vocabulary"
    assert 0.5 < metrics["bits_per_byte"] < 8
    report = json.loads((eval_out / REPORT_JSON).read_text())
    assert len(report["samples"]) == 2 and all(s["completion"] for s in report["samples"])
    assert (eval_out / "loss_curves.png").read_bytes().startswith(b"\x89PNG"), "the training curve, plotted"
    html = (eval_out / "report.html").read_text()
    assert "<table>" in html and 'src="loss_curves.png"' in html and "<h2>Samples</h2>" in html


def test_zero3_two_processes_consolidates_the_model(shards, tmp_path):
    # 10 steps: what is checked is the consolidated model, not how far it trained.
    config, out, stats = run_training(shards, tmp_path, zero_stage=3, nproc_per_node=2, max_steps=10)
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
    while time.monotonic() < deadline and not (tmp_path / "train" / "work" / "metrics.jsonl").is_file():
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
    assert "exitcode  : -9" in str(error), "torchrun's report on the killed worker"
    assert error.retryable


def test_a_worker_error_is_not_retried_and_shows_its_traceback(shards, tmp_path):
    """Token ids beyond the vocabulary that meta.json declares: the worker's embedding raises.
    The same data would fail again, so no retry, and the user sees the worker's error."""
    import shutil

    bad = tmp_path / "shards"
    shutil.copytree(shards / SHARDS_DIR, bad)
    meta = json.loads((bad / "meta.json").read_text())
    (bad / "meta.json").write_text(json.dumps({**meta, "vocab_size": 16}))
    config = TrainConfig(model=TINY, micro_batch_size=2, grad_accum_steps=1, max_steps=5, warmup_steps=1)
    out = tmp_path / "train"
    out.mkdir()
    with pytest.raises(StageError, match=r"\[train\] training processes exited with code 1") as info:
        train(config, bad, out)
    assert not info.value.retryable
    assert "IndexError: index out of range in self" in str(info.value)
    assert 'llm_core/models/gpt.py", line' in str(info.value), "the traceback's frames"


def test_a_run_past_its_timeout_stops_its_processes(shards, tmp_path):
    """A stage timeout arrives as an exception in the main thread (Prefect's alarm) while
    ``train`` waits on torchrun: it must propagate, and no training process may outlive it."""
    import signal
    import time

    import psutil

    fired = []

    def past_timeout(signum, frame):
        if (tmp_path / "train" / "work" / "metrics.jsonl").is_file() or time.monotonic() > give_up:  # training is under way
            signal.setitimer(signal.ITIMER_REAL, 0)  # a timeout fires once
            fired.append(time.monotonic())
            raise TimeoutError("train ran past its timeout")

    give_up = time.monotonic() + 180
    previous = signal.signal(signal.SIGALRM, past_timeout)
    signal.setitimer(signal.ITIMER_REAL, 0.5, 0.5)
    try:
        with pytest.raises(TimeoutError, match="past its timeout"):
            run_training(shards, tmp_path, max_steps=100_000, nproc_per_node=2)
        raised = time.monotonic()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert (tmp_path / "train" / "work" / "metrics.jsonl").is_file(), "timed out before training started"

    def ours(process):  # this run's torchrun and workers: their command line names its job.json
        try:
            cmdline = " ".join(process.cmdline())
        except psutil.Error:
            return False
        return str(tmp_path) in cmdline and ("llm_core.train.worker" in cmdline or "torch.distributed.run" in cmdline)

    left = [p for p in psutil.process_iter() if ours(p)]
    assert not left, f"training processes outlived the timeout: {left}"
    assert raised - fired[0] < 30, "stopped within the grace period"


def test_training_dies_with_a_killed_orchestrator(shards, tmp_path):
    """SIGKILL the process that launched training (no cleanup code runs there): torchrun and
    its workers must not train on, holding the accelerator and racing the retry. The workers
    log nothing meanwhile (a huge log_every), so no broken pipe would stop them either."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    out = tmp_path / "train"
    out.mkdir()
    launch = ("import sys; from pathlib import Path; from llm_core.train import train; "
              "from llm_core.train.config import TrainConfig, ModelConfig; "
              "train(TrainConfig(model=ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=32), max_steps=100000, "
              "log_every=100000, micro_batch_size=2, grad_accum_steps=1, warmup_steps=1), "
              "Path(sys.argv[1]), Path(sys.argv[2]))")
    orchestrator = subprocess.Popen([sys.executable, "-c", launch, str(shards / SHARDS_DIR), str(out)])

    def workers():
        found = []
        for p in psutil.Process(orchestrator.pid).children(recursive=True):
            try:
                if "llm_core.train.worker" in " ".join(p.cmdline()) and "torch.distributed.run" not in p.cmdline():
                    found.append(p)
            except psutil.Error:
                pass
        return found

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not workers():
        time.sleep(0.2)
    # Training under way: DeepSpeed's start-up messages are over (a write to the dead
    # orchestrator's pipe would end the workers by itself, hiding what is tested).
    log, size, quiet_since = out / "train.log", -1, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < 6:
        time.sleep(0.5)
        if log.stat().st_size != size:
            size, quiet_since = log.stat().st_size, time.monotonic()
    family = psutil.Process(orchestrator.pid).children(recursive=True)
    assert any("llm_core.train.worker" in " ".join(p.cmdline()) for p in family), "training never started"
    orchestrator.send_signal(signal.SIGKILL)
    orchestrator.wait()
    _, alive = psutil.wait_procs(family, timeout=40)
    for p in alive:
        p.kill()
    assert not alive, f"training outlived its orchestrator: {alive}"


def test_which_training_failures_are_transient():
    raised = ("[rank0]: IndexError: index out of range in self\n"
              "  exitcode  : 1 (pid: 4663)\n  traceback : Traceback (most recent call last):")
    assert not failure_is_transient(1, raised), "a Python error in a worker"
    assert failure_is_transient(1, "  exitcode  : -9 (pid: 123)\n  traceback : Signal 9 (SIGKILL) received by PID 123")
    assert failure_is_transient(-15, ""), "torchrun itself killed"
    assert failure_is_transient(1, "torch.distributed.elastic.multiprocessing.api.SignalException: Process 7 got signal: 15")
    assert failure_is_transient(1, "[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=9, "
                                   "OpType=ALLREDUCE) ran for 600000 milliseconds before timing out.")
    assert failure_is_transient(1, "RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] "
                                   "Connection closed by peer [127.0.0.1]:29500")
    assert failure_is_transient(1, "torch.distributed.DistNetworkError: Connection reset by peer")
    assert failure_is_transient(1, "torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1970, "
                                   "remote process exited or there was a network error\nncclRemoteError: ...")
    assert not failure_is_transient(1, "torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1970, "
                                       "invalid usage\nncclInvalidUsage: This usually reflects invalid usage")
    # A bug on rank 0 makes rank 1 lose its peer: torchrun's root cause (rank 0's) decides.
    bug_with_peer_fallout = ("[rank1]: RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] "
                             "Connection closed by peer [127.0.0.1]:29500\n"
                             "Root Cause (first observed failure):\n[0]:\n  rank      : 0 (local_rank: 0)\n"
                             "  exitcode  : 1 (pid: 4663)\n  traceback : Traceback (most recent call last):\n"
                             "  IndexError: index out of range in self")
    assert not failure_is_transient(1, bug_with_peer_fallout)


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
    assert "scheduler" not in ds, "the worker's LambdaLR over llm_core.train.schedule.lr_at"
    assert ds["optimizer"]["params"]["torch_adam"] and "fused" not in ds["optimizer"]["params"]
    assert deepspeed_config(config, cuda=True)["optimizer"]["params"]["fused"] is True
    offload = deepspeed_config(config.model_copy(update={"offload_optimizer": True}), cuda=True)
    assert offload["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert not offload["optimizer"]["params"]["torch_adam"] and "fused" not in offload["optimizer"]["params"]
    lamb = config.model_copy(update={"optimizer": "lamb", "zero_stage": 0})
    assert "optimizer" not in deepspeed_config(lamb), "CPU: our Lamb, passed to deepspeed.initialize"
    assert deepspeed_config(lamb, cuda=True)["optimizer"]["type"] == "Lamb", "GPU: DeepSpeed's FusedLamb"
    profiled = deepspeed_config(config, profile_file="/tmp/profile.txt")["flops_profiler"]
    assert profiled["enabled"] and profiled["output_file"] == "/tmp/profile.txt"
    sized = config.model_copy(update={"global_batch_size": 64, "micro_batch_size": 8})
    assert deepspeed_config(sized, world_size=2)["gradient_accumulation_steps"] == 4
