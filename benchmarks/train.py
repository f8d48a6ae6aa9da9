"""Training throughput: our DeepSpeed train stage vs a plain PyTorch loop, same model and data.

Both train the same GPT on the same packed shards with the same batch, accumulation,
clipping, AdamW and warmup-cosine schedule for the same number of steps; each reports
tokens per second over its training steps (model build and process start excluded).
The ratio ``deepspeed_over_plain`` is what the DeepSpeed machinery (ZeRO, its engine)
costs or gains at this size. On a GPU it also reports MFU against ``--peak-tflops``.

    .venv/bin/python benchmarks/train.py                      # CPU preset, a few minutes on 2 cores
    python benchmarks/train.py --preset gpu --peak-tflops 989 # one GPU, bf16, a GPT-2-small-sized model

Shards: built from ../shared/data/text_tinyshakespeare (tokenizer stage, 2048 BPE tokens)
into benchmarks/out/train_shards unless --shards names a directory holding meta.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llm_core.config import ModelConfig, TrainConfig  # noqa: E402
from llm_core.models import GPT, GPTConfig  # noqa: E402
from llm_core.tokenizer.shards import TokenShards  # noqa: E402
from llm_core.train import train  # noqa: E402

PRESETS = {
    "cpu": TrainConfig(model=ModelConfig(n_layer=4, n_head=4, n_embd=256, block_size=256), micro_batch_size=8,
                       grad_accum_steps=2, max_steps=40, warmup_steps=4, log_every=10, precision="fp32"),
    "gpu": TrainConfig(model=ModelConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024), micro_batch_size=16,
                       grad_accum_steps=2, max_steps=60, warmup_steps=5, log_every=10, precision="bf16", lr=6e-4,
                       min_lr=6e-5),
}


def build_shards(out: Path) -> Path:
    if (out / "meta.json").is_file():
        return out
    import pyarrow as pa

    from llm_core.config import TokenizerConfig
    from llm_core.documents import DOCUMENT_SCHEMA, write_documents
    from llm_core.tokenizer import build_tokenizer_and_shards

    shared = Path(os.environ.get("LLMPIPE_SHARED_DATA", REPO.parent / "shared" / "data"))
    text = (shared / "text_tinyshakespeare" / "input.txt").read_text()
    scenes = [s for s in text.split("\n\n") if s.strip()]
    docs = ["\n\n".join(scenes[i:i + 50]) for i in range(0, len(scenes), 50)]
    with tempfile.TemporaryDirectory() as tmp:  # built aside, moved into place when complete
        rows = [{"id": f"tiny-shakespeare-{i}", "text": t, "source": "local"} for i, t in enumerate(docs)]
        write_documents(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), Path(tmp) / "docs")
        build_tokenizer_and_shards(TokenizerConfig(vocab_size=2048), Path(tmp) / "docs", Path(tmp))
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(Path(tmp) / "shards"), out)
    return out


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warmup then cosine to min_lr: DeepSpeed's WarmupCosineLR as configured by the stage."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / max(config.warmup_steps, 1)
    progress = (step - config.warmup_steps) / max(config.max_steps - config.warmup_steps, 1)
    floor = config.min_lr / config.lr
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def plain_torch(config: TrainConfig, shards: Path, device: str) -> dict:
    torch.manual_seed(config.seed)
    data = TokenShards(shards, "train")
    m = config.model
    model = GPT(GPTConfig(vocab_size=data.vocab_size, block_size=m.block_size, n_layer=m.n_layer, n_head=m.n_head,
                          n_embd=m.n_embd, dropout=m.dropout, bias=m.bias)).to(device)
    optimizer = torch.optim.AdamW(model.param_groups(config.weight_decay), lr=config.lr,
                                  betas=(config.beta1, config.beta2), fused=device.startswith("cuda"))
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16,
                              enabled=config.precision == "bf16")
    rng = np.random.default_rng(config.seed)
    losses = []
    started = None
    for step in range(config.max_steps):
        if step == config.log_every:  # same warm-up boundary as the DeepSpeed run's metrics
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
    tokens = (config.max_steps - config.log_every) * config.grad_accum_steps * config.micro_batch_size * m.block_size
    return {"tokens_per_s": tokens / elapsed, "final_loss": float(np.mean(losses[-config.grad_accum_steps * 5:])),
            "flops_per_token": model.flops_per_token(), "params": model.num_params()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--shards", type=Path, default=REPO / "benchmarks" / "out" / "train_shards")
    parser.add_argument("--zero-stage", type=int, default=2)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense peak, for MFU")
    args = parser.parse_args()

    config = PRESETS[args.preset].model_copy(update={"zero_stage": args.zero_stage})
    shards = build_shards(args.shards)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    baseline = plain_torch(config, shards, device)
    with tempfile.TemporaryDirectory() as out:
        ours = train(config, shards, Path(out))
        curve = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    first, last = curve[0], curve[-1]  # logged at step log_every and at the last step
    tokens_per_step = config.micro_batch_size * config.grad_accum_steps * config.model.block_size
    ours["tokens_per_s"] = (last["step"] - first["step"]) * tokens_per_step / (last["elapsed_s"] - first["elapsed_s"])

    figures = {
        "benchmark": "train",
        "preset": args.preset,
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "precision": config.precision,
        "zero_stage": config.zero_stage,
        "params": baseline["params"],
        "tokens_per_step": tokens_per_step,
        "steps": config.max_steps,
        "timed_steps": config.max_steps - config.log_every,
        "deepspeed_tokens_per_s": round(ours["tokens_per_s"], 1),
        "plain_torch_tokens_per_s": round(baseline["tokens_per_s"], 1),
        "deepspeed_over_plain": round(ours["tokens_per_s"] / baseline["tokens_per_s"], 3),
        "deepspeed_final_loss": round(ours["final_loss"], 4),
        "plain_torch_final_loss": round(baseline["final_loss"], 4),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    if args.peak_tflops:
        for name in ("deepspeed", "plain_torch"):
            achieved = baseline["flops_per_token"] * figures[f"{name}_tokens_per_s"]
            figures[f"{name}_mfu"] = round(achieved / (args.peak_tflops * 1e12), 4)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
