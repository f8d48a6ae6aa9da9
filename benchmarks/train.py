"""Training: throughput against a plain PyTorch loop, and validation bits per byte in a fixed time.

1. Throughput: our train stage (DeepSpeed through ``torchrun`` workers) against a plain PyTorch
   loop in one process, in the same run: the same GPT, packed shards, batch, accumulation,
   clipping, AdamW and schedule (``llm_core.train.schedule.lr_at``, which the trainer's
   ``LambdaLR`` also follows) for the same number of steps. Each reports tokens/s over its
   steps after the first ``log_every`` (model build and process start excluded). The trainer
   runs with ``tensorboard: false`` and ``checkpoint.every_steps: 0``, so the loop is what is
   measured. ``tokens_per_s_ratio_vs_torch`` = ours / plain (target >= 0.9). On a GPU, MFU
   against ``llm_core.train.cost.peak_tflops(device name, precision)`` (or ``--peak-tflops``).
2. Quality in a fixed time: tiny Shakespeare through the pipeline's own stages -- the tokenizer
   stage (byte-level BPE, its split by document: 10 % of the documents held out), the train
   stage (one process, ``max_time_s`` = ``--budget-s``, default 250 s of training) and the
   evaluate stage -- and the validation **bits per byte** (``evaluate``: summed loss of the
   text tokens in bits over their UTF-8 bytes, whole val split). Baseline: nanoGPT's CPU
   recipe for character-level Shakespeare (README, "I only have a macbook": 4 layers, 128
   wide, block 64, 2000 iterations, ~3 minutes) reaches val loss 1.88 nats per character =
   2.71 bits per byte (the text is ASCII). Its val split is the last 10 % of the characters,
   ours 10 % of the documents: close, not identical. ``max_steps`` (which places the decay
   of the schedule) is set from a short probe of the step time on this machine just before
   the run, so the schedule ends at about the time budget; ``max_time_s`` is the hard stop.

    .venv/bin/python benchmarks/train.py                # CPU: ~10 minutes on 2 cores
    .venv/bin/python benchmarks/train.py --quick        # smoke run: short throughput, 30 s budget
    .venv/bin/python benchmarks/train.py --budget-s 60 --skip-throughput --set lr=2e-3 --set model.n_embd=192
    python benchmarks/train.py --preset gpu             # one GPU, bf16: GPT-2-small-sized throughput model

Shards are built into benchmarks/out/ (cached by vocabulary size). Progress goes to stderr;
the last line of stdout is one JSON object of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from support import log, rounded, shared_data  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from llm_core.evaluate import evaluate  # noqa: E402
from llm_core.evaluate.config import EvaluateConfig  # noqa: E402
from llm_core.models import GPT  # noqa: E402
from llm_core.models.block import flops_per_token, param_groups  # noqa: E402
from llm_core.tokenizer.shards import TokenShards  # noqa: E402
from llm_core.tokenizer.train import SHARDS_DIR, TOKENIZER_FILE  # noqa: E402
from llm_core.train import cost, train  # noqa: E402
from llm_core.train.config import CheckpointConfig, ModelConfig, TrainConfig, ValidationConfig  # noqa: E402
from llm_core.train.schedule import lr_at  # noqa: E402

BASELINE_NANOGPT_BPB = 2.71  # 1.88 nats/char / ln 2 (nanoGPT README, CPU Shakespeare-char recipe)
LOOP_ONLY = {"tensorboard": False, "checkpoint": CheckpointConfig(every_steps=0)}

# 1. Throughput: the model and batch of the earlier rows of RESULTS.md (CPU 3.7 M, GPU GPT-2 small).
THROUGHPUT = {
    "cpu": TrainConfig(model=ModelConfig(n_layer=4, n_head=4, n_embd=256, block_size=256), micro_batch_size=8,
                       grad_accum_steps=2, max_steps=40, warmup_steps=4, log_every=10, precision="fp32",
                       **LOOP_ONLY),
    "gpu": TrainConfig(model=ModelConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024), micro_batch_size=16,
                       grad_accum_steps=2, max_steps=60, warmup_steps=5, log_every=10, precision="bf16", lr=6e-4,
                       min_lr=6e-5, **LOOP_ONLY),
}
THROUGHPUT_VOCAB = 2048

# 2. Bits per byte in a fixed time: chosen by short trials on this machine (RESULTS.md). max_steps
# is replaced by the calibrated one; validation.every_steps by a tenth of it.
BUDGET = {
    "cpu": (2048, TrainConfig(model=ModelConfig(n_layer=4, n_head=4, n_embd=192, block_size=128), micro_batch_size=16,
                              grad_accum_steps=1, lr=2e-3, min_lr=2e-4, schedule="cosine", warmup_steps=10,
                              precision="bf16", zero_stage=0, log_every=25, weight_decay=0.1,
                              validation=ValidationConfig(every_steps=100, batches=4), **LOOP_ONLY)),
    "gpu": (2048, TrainConfig(model=ModelConfig(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2),
                              micro_batch_size=64, grad_accum_steps=1, lr=1e-3, min_lr=1e-4, schedule="cosine",
                              warmup_steps=100, precision="bf16", zero_stage=0, log_every=50,
                              validation=ValidationConfig(every_steps=250, batches=8), **LOOP_ONLY)),
}
PROBE_STEPS = 8  # timed plain-PyTorch steps (after 3 untimed) that calibrate max_steps
TRAINER_SPEED = 0.8  # the trainer's steps/s relative to the probe's (DeepSpeed, validation, start of the loop)


# --- data ---------------------------------------------------------------------------------------
def build_tokenizer(out: Path, vocab_size: int, kind: str = "byte_bpe", **settings) -> Path:
    """Tiny Shakespeare (50 scenes a document) through the tokenizer stage (byte-level BPE unless
    ``kind`` says otherwise; ``settings``: more TokenizerConfig fields): ``out`` holds tokenizer.json
    and shards/ (with a val split). Built aside, moved into place when complete."""
    if (out / SHARDS_DIR / "meta.json").is_file() and (out / TOKENIZER_FILE).is_file():
        return out
    import pyarrow as pa

    from llm_core.documents import DOCUMENT_SCHEMA, write_documents
    from llm_core.tokenizer import build_tokenizer_and_shards
    from llm_core.tokenizer.config import TokenizerConfig

    text = (shared_data() / "text_tinyshakespeare" / "input.txt").read_text()
    scenes = [s for s in text.split("\n\n") if s.strip()]
    docs = ["\n\n".join(scenes[i:i + 50]) for i in range(0, len(scenes), 50)]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [{"id": f"tiny-shakespeare-{i}", "text": t, "source": "local"} for i, t in enumerate(docs)]
        write_documents(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), Path(tmp) / "docs")
        built = Path(tmp) / "tokenizer"
        built.mkdir()
        build_tokenizer_and_shards(TokenizerConfig(kind=kind, vocab_size=vocab_size, **settings), Path(tmp) / "docs",
                                   built)
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(built), out)
    return out


def with_overrides(config: TrainConfig, assignments: list[str]) -> TrainConfig:
    """``key=value`` settings (``model.n_embd=192``, ``lr=2e-3``, ``validation.every_steps=0``), values as YAML."""
    import yaml

    data = config.model_dump()
    for assignment in assignments:
        key, _, value = assignment.partition("=")
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[leaf] = yaml.safe_load(value)
    return TrainConfig.model_validate(data)


# --- 1. throughput ------------------------------------------------------------------------------
def plain_torch(config: TrainConfig, shards: Path, device: str, steps: int | None = None,
                untimed: int | None = None) -> dict:
    """The plain loop: ``steps`` optimizer steps (default ``max_steps``), the first ``untimed``
    (default ``log_every``) not timed; the learning rate from ``lr_at`` at every step."""
    steps = config.max_steps if steps is None else steps
    untimed = config.log_every if untimed is None else untimed
    torch.manual_seed(config.seed)
    data = TokenShards(shards, "train")
    m = config.model
    model = GPT(m.transformer(data.vocab_size)).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr,
                                  betas=(config.beta1, config.beta2), fused=device.startswith("cuda"))
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16,
                              enabled=config.precision == "bf16")
    rng = np.random.default_rng(config.seed)
    losses = []
    started = None
    for step in range(steps):
        if step == untimed:  # the same warm-up boundary as the DeepSpeed run's metrics
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        for _ in range(config.grad_accum_steps):
            batch = torch.from_numpy(data.sample_windows(rng, config.micro_batch_size, m.block_size + 1)).to(device)
            with autocast:
                _, loss = model(batch[:, :-1], batch[:, 1:])
            (loss / config.grad_accum_steps).backward()
            losses.append(loss.item())
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    tokens = (steps - untimed) * config.grad_accum_steps * config.micro_batch_size * m.block_size
    params = model.num_params()
    return {"tokens_per_s": tokens / elapsed, "step_s": elapsed / (steps - untimed),
            "final_loss": float(np.mean(losses[-config.grad_accum_steps * 5:])), "params": params,
            "flops_per_token": flops_per_token(params, m.n_layer, m.n_embd, m.block_size)}


def bench_throughput(config: TrainConfig, shards: Path, device: str, peak_tflops: float | None) -> dict:
    log(f"throughput: plain PyTorch loop, {config.max_steps} steps")
    plain = plain_torch(config, shards, device)
    log(f"throughput: plain {plain['tokens_per_s']:,.0f} tokens/s; now the train stage (DeepSpeed ZeRO-"
        f"{config.zero_stage}, torchrun)")
    with tempfile.TemporaryDirectory(prefix="llmpipe-bench-train-") as out:
        ours = train(config, shards, Path(out))
        curve = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    first, last = curve[0], curve[-1]  # logged at step log_every and at the last step
    tokens_per_step = config.micro_batch_size * config.grad_accum_steps * config.model.block_size
    ours_tps = (last["step"] - first["step"]) * tokens_per_step / (last["elapsed_s"] - first["elapsed_s"])
    figures = {
        "precision": config.precision, "zero_stage": config.zero_stage, "params": plain["params"],
        "tokens_per_step": tokens_per_step, "steps": config.max_steps, "timed_steps": config.max_steps - config.log_every,
        "deepspeed_tokens_per_s": ours_tps, "plain_torch_tokens_per_s": plain["tokens_per_s"],
        "tokens_per_s_ratio_vs_torch": ours_tps / plain["tokens_per_s"],
        "deepspeed_final_loss": ours["final_loss"], "plain_torch_final_loss": plain["final_loss"],
    }
    if peak_tflops:
        figures["peak_tflops"] = peak_tflops
        for name in ("deepspeed", "plain_torch"):
            figures[f"{name}_mfu"] = cost.mfu(figures[f"{name}_tokens_per_s"], plain["flops_per_token"], peak_tflops)
    log(f"throughput: ours {ours_tps:,.0f} tokens/s, ratio {figures['tokens_per_s_ratio_vs_torch']:.3f}")
    return figures


# --- 2. bits per byte in a fixed time -----------------------------------------------------------
def bench_budget(config: TrainConfig, tok_dir: Path, budget_s: float, device: str) -> dict:
    shards = tok_dir / SHARDS_DIR
    probe = plain_torch(config.model_copy(update={"max_steps": 3 + PROBE_STEPS, "warmup_steps": 1}), shards, device,
                        steps=3 + PROBE_STEPS, untimed=3)
    max_steps = max(config.warmup_steps + 10, int(budget_s * TRAINER_SPEED / probe["step_s"]))
    update = {"max_steps": max_steps, "max_time_s": budget_s}
    if config.validation.every_steps:
        update["validation"] = config.validation.model_copy(update={"every_steps": max(10, max_steps // 10)})
    config = config.model_copy(update=update)
    tokens_per_step = config.micro_batch_size * config.grad_accum_steps * config.model.block_size
    log(f"budget: probe {probe['step_s'] * 1000:.0f} ms/step ({probe['tokens_per_s']:,.0f} tokens/s) -> max_steps "
        f"{max_steps} for {budget_s:g} s; {probe['params'] / 1e6:.2f} M params, {tokens_per_step} tokens/step, "
        f"{config.precision}, {config.schedule}, lr {config.lr:g}")
    with tempfile.TemporaryDirectory(prefix="llmpipe-bench-train-") as tmp:
        out = Path(tmp) / "train"
        out.mkdir()
        stats = train(config, shards, out)
        log(f"budget: {stats['steps']} steps in {stats['train_s']:.0f} s ({stats['stopped_by']}), "
            f"{stats['tokens_per_s']:,.0f} tokens/s, exported step {stats['exported_step']}; evaluating")
        (Path(tmp) / "evaluate").mkdir()
        metrics = evaluate(EvaluateConfig(batch_size=16, num_samples=1, sample_tokens=48), tok_dir / TOKENIZER_FILE,
                           shards, out / "model.pt", Path(tmp) / "evaluate")
        sample = json.loads((Path(tmp) / "evaluate" / "report.json").read_text())["samples"]
    if sample:
        log(f"budget: sample: {sample[0]['prompt']!r} -> {sample[0]['completion']!r}")
    meta = json.loads((shards / "meta.json").read_text())
    log(f"budget: val_loss {metrics['val_loss']} nats/token, {metrics['bits_per_byte']} bits per byte")
    return {
        "val_bpb": metrics["bits_per_byte"], "val_loss_nats_per_token": metrics["val_loss"],
        "val_tokens": metrics["val_tokens"], "val_bytes": metrics["val_bytes"],
        "train_tokens": meta["splits"]["train"]["tokens"],
        "steps": stats["steps"], "max_steps": max_steps, "stopped_by": stats["stopped_by"],
        "exported_step": stats["exported_step"], "train_s": stats["train_s"], "tokens_per_s": stats["tokens_per_s"],
        "tokens_seen": stats["tokens_seen"], "best_val_loss_in_training": stats["best_val_loss"],
        "probe_tokens_per_s": probe["tokens_per_s"], "params": stats["params"], "mfu": stats.get("mfu"),
        "settings": {"vocab_size": TokenShards(shards, "train").vocab_size,
                     **config.model.model_dump(), "micro_batch_size": config.micro_batch_size,
                     "grad_accum_steps": config.grad_accum_steps, "precision": config.precision,
                     "zero_stage": config.zero_stage, "optimizer": config.optimizer, "lr": config.lr,
                     "min_lr": config.min_lr, "schedule": config.schedule, "warmup_steps": config.warmup_steps,
                     "weight_decay": config.weight_decay, "validation_every_steps": config.validation.every_steps},
    }


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", choices=sorted(THROUGHPUT), default="cpu")
    parser.add_argument("--zero-stage", type=int, default=2, help="of the throughput comparison")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense peak, for MFU (default: llm_core.train.cost.peak_tflops)")
    parser.add_argument("--budget-s", type=float, default=250.0, help="training time of the bits-per-byte run")
    parser.add_argument("--vocab-size", type=int, default=None, help="of the bits-per-byte run (default: the preset's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a TrainConfig setting of the bits-per-byte run, e.g. model.n_embd=256 (repeatable)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 15 throughput steps, a 30 s budget")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-budget", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.budget_s = min(args.budget_s, 30.0)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.preset == "gpu" and device != "cuda":
        sys.exit("--preset gpu needs a CUDA device")
    load_before = os.getloadavg()
    figures: dict = {"benchmark": "train", "preset": args.preset,
                     "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({os.cpu_count()} cores)"}
    out_root = REPO / "benchmarks" / "out"

    if not args.skip_throughput:
        config = THROUGHPUT[args.preset].model_copy(update={"zero_stage": args.zero_stage})
        if args.quick:
            config = config.model_copy(update={"max_steps": 15, "log_every": 5})
        peak = args.peak_tflops or (cost.peak_tflops(torch.cuda.get_device_name(), config.precision)
                                    if device == "cuda" else None)
        shards = build_tokenizer(out_root / f"shakespeare_bpe{THROUGHPUT_VOCAB}", THROUGHPUT_VOCAB) / SHARDS_DIR
        throughput = bench_throughput(config, shards, device, peak)
        figures["tokens_per_s_ratio_vs_torch"] = throughput["tokens_per_s_ratio_vs_torch"]
        figures["throughput"] = throughput

    if not args.skip_budget:
        vocab, config = BUDGET[args.preset]
        vocab = args.vocab_size or vocab
        config = with_overrides(config, args.set)
        tok_dir = build_tokenizer(out_root / f"shakespeare_bpe{vocab}", vocab)
        budget = bench_budget(config, tok_dir, args.budget_s, device)
        figures.update({"val_bpb_shakespeare": budget["val_bpb"], "val_bpb_baseline_nanogpt": BASELINE_NANOGPT_BPB,
                        "budget_s": args.budget_s, "budget": budget})

    load_after = os.getloadavg()
    figures.update({
        "wall_s": time.perf_counter() - started,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "load_avg": {"start_1m": load_before[0], "end_1m": load_after[0], "end_5m": load_after[1],
                     "end_15m": load_after[2]},
    })
    print(json.dumps(rounded(figures)))


if __name__ == "__main__":
    main()
