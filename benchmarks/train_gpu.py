"""Training on one GPU: MFU of our train stage against a plain PyTorch loop, and memory per ZeRO stage.

For a lent GPU machine (H100/H200), a few minutes. The model is GPT-2 small (12 layers, 12 heads,
768 wide, block 1024, vocabulary 50304: 124 M parameters). The data is tiny Shakespeare through the
tokenizer stage (byte-level BPE 2048, cached in benchmarks/out/ as benchmarks/train.py does; random
ids where neither the cache nor the shared data is here). The pipeline tokenizer cannot give GPT-2's
vocabulary on this text (byte BPE tops out at ~21.5 k tokens), so the shards are read through a
meta.json declaring 50304 (``--vocab-size``; 0 keeps 2048: 86.5 M parameters): the ids stay below
2048, the embedding, the 50304-wide output layer and its softmax cost the same FLOPs and memory.

1. MFU, bf16, batch 16 x 2 accumulation x 1024 tokens: the train stage (``llm_core.train.train``, a
   ``torchrun`` worker, DeepSpeed ZeRO-2, no TensorBoard, no periodic checkpoints) against a plain loop
   in this process (the same GPT, ``torch.autocast`` bf16, fused AdamW, clipping, ``lr_at``; eager as
   the stage, ``--compile`` for torch.compile). Both timed over the steps after the first
   ``log_every`` (the stage's from its metrics.jsonl); the stage's own ``tokens_per_s`` and ``mfu``
   (train_stats.json: every step from the start of its loop) are reported as ``*_stage_reported``.
   MFU = tokens/s x ``flops_per_token(num_params(), ...)`` / ``cost.peak_tflops(device, "bf16")``.
2. Memory, ZeRO 0-3: short train-stage runs at micro-batch 2 (activations small beside ~1.9 GiB of
   model states); the worker's peak ``torch.cuda.max_memory_allocated`` during training (its last
   metrics record; ``peak_end_of_run_mb`` is train_stats.json's, after the checkpoint and export)
   against the model states of mixed-precision Adam in the ZeRO paper (Rajbhandari et al. 2020):
   (2 + 2 + K) Psi bytes, K = 12, the optimizer states / gradients / parameters divided by N_d from
   stage 1 / 2 / 3. One GPU: N_d = 1, the same at every stage; ``over_stage0_mb`` is what a stage
   costs here beyond stage 0. Reference: the plain loop's peak at that batch (16 Psi of states too).

    python benchmarks/train_gpu.py                      # ~4-5 minutes on an H200
    python benchmarks/train_gpu.py --steps 20 --skip-memory

Without CUDA it exits with status 2. Progress goes to stderr; the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from support import log, rounded  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from llm_core.errors import StageError  # noqa: E402
from llm_core.models import GPT  # noqa: E402
from llm_core.models.block import flops_per_token, param_groups  # noqa: E402
from llm_core.tokenizer.shards import META_FILE, TokenShards  # noqa: E402
from llm_core.tokenizer.train import SHARDS_DIR  # noqa: E402
from llm_core.train import cost, train  # noqa: E402
from llm_core.train.config import CheckpointConfig, ModelConfig, TrainConfig  # noqa: E402
from llm_core.train.monitor import METRICS_FILE  # noqa: E402
from llm_core.train.schedule import lr_at  # noqa: E402

GPT2_VOCAB = 50304  # GPT-2's 50257 rounded up to a multiple of 64 (nanoGPT)
SHARDS_VOCAB = 2048  # the tokenizer stage's vocabulary (benchmarks/train.py's throughput shards)
ADAM_K = 12  # ZeRO paper: bytes of optimizer state per parameter (fp32 master, momentum, variance)
CONFIG = TrainConfig(model=ModelConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024), micro_batch_size=16,
                     grad_accum_steps=2, max_steps=40, warmup_steps=5, log_every=10, precision="bf16", zero_stage=2,
                     lr=6e-4, min_lr=6e-5, tensorboard=False, checkpoint=CheckpointConfig(every_steps=0))


def zero_model_states_mb(psi: int, stage: int, n_d: int = 1, k: int = ADAM_K) -> float:
    """Model states of mixed-precision Adam under ZeRO ``stage`` in MiB: 2 Psi 16-bit parameters,
    2 Psi 16-bit gradients, K Psi optimizer states; stage 1 partitions the optimizer states over
    ``n_d`` processes, stage 2 the gradients too, stage 3 the parameters too."""
    params, grads, states = 2.0 * psi, 2.0 * psi, float(k * psi)
    states /= n_d if stage >= 1 else 1
    grads /= n_d if stage >= 2 else 1
    params /= n_d if stage >= 3 else 1
    return (params + grads + states) / 2**20


# --- data ---------------------------------------------------------------------------------------
def tokenizer_shards(out: Path) -> Path:
    """Tiny Shakespeare through the tokenizer stage, as benchmarks/train.py builds and caches it; its shards."""
    from train import build_tokenizer

    return build_tokenizer(out, SHARDS_VOCAB) / SHARDS_DIR


def random_shards(out: Path, vocab: int, tokens: int = 2**20) -> Path:
    """Uniform random ids (when neither the cache nor the shared data is at hand): speed and
    memory do not depend on which ids are drawn."""
    out.mkdir(parents=True)
    ids = np.random.default_rng(0).integers(1, vocab, tokens, dtype=np.uint32).astype(np.uint16)
    ids.tofile(out / "train_00000.bin")
    meta = {"kind": "random", "dtype": "uint16", "vocab_size": vocab, "eot_token": None, "eot_id": 0,
            "splits": {"train": {"files": ["train_00000.bin"], "docs": 0, "tokens": tokens, "bytes": 2 * tokens}}}
    (out / META_FILE).write_text(json.dumps(meta))
    return out


def widened(shards: Path, vocab: int, out: Path) -> Path:
    """The same shard files (linked) under a meta.json that declares ``vocab`` tokens."""
    meta = json.loads((shards / META_FILE).read_text())
    if vocab < meta["vocab_size"] or vocab - 1 > np.iinfo(np.dtype(meta["dtype"])).max:
        raise SystemExit(f"--vocab-size {vocab} cannot hold the shards' {meta['vocab_size']} {meta['dtype']} ids")
    out.mkdir(parents=True)
    for split in meta["splits"].values():
        for name in split["files"]:
            (out / name).symlink_to((shards / name).resolve())
    (out / META_FILE).write_text(json.dumps({**meta, "vocab_size": vocab}))
    return out


# --- the two trainers ---------------------------------------------------------------------------
def plain_torch(config: TrainConfig, shards: Path, compile_model: bool = False) -> dict:
    """``max_steps`` optimizer steps in this process, the first ``log_every`` untimed; peak memory."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(config.seed)
    data, m, steps, untimed = TokenShards(shards, "train"), config.model, config.max_steps, config.log_every
    model = GPT(m.transformer(data.vocab_size)).cuda()
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr,
                                  betas=(config.beta1, config.beta2), fused=True)
    forward = torch.compile(model) if compile_model else model
    rng, losses, started = np.random.default_rng(config.seed), [], time.perf_counter()
    for step in range(steps):
        if step == untimed:
            torch.cuda.synchronize()
            started = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        for _ in range(config.grad_accum_steps):
            batch = torch.from_numpy(data.sample_windows(rng, config.micro_batch_size, m.block_size + 1)).cuda()
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                _, loss = forward(batch[:, :-1], batch[:, 1:])
            (loss / config.grad_accum_steps).backward()
            losses.append(loss.item())  # a sync per micro-batch, as the worker's loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    tokens = (steps - untimed) * config.grad_accum_steps * config.micro_batch_size * m.block_size
    figures = {"tokens_per_s": tokens / elapsed if steps > untimed else None, "final_loss": float(np.mean(losses[-4:])),
               "params": model.num_params(), "params_total": model.num_params(non_embedding=False),
               "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20}
    del model, optimizer, forward
    torch.cuda.empty_cache()
    return figures


def stage_run(config: TrainConfig, shards: Path, tmp: Path) -> dict:
    """The train stage in a worker process; tokens/s over the logged steps after the first record."""
    with tempfile.TemporaryDirectory(dir=tmp) as run:  # checkpoint + model.pt: ~2 GB, gone after each run
        (Path(run) / "out").mkdir()
        stats = train(config, shards, Path(run) / "out", Path(run) / "work")
        curve = [json.loads(line) for line in (Path(run) / "out" / METRICS_FILE).read_text().splitlines()]
    first, last = curve[0], curve[-1]
    steady = None
    if last["step"] > first["step"]:
        steady = (last["step"] - first["step"]) * stats["tokens_per_step"] / (last["elapsed_s"] - first["elapsed_s"])
    return {"tokens_per_s": steady, "stats": stats, "peak_memory_mb": last["peak_memory_mb"]}


def bench_memory(config: TrainConfig, shards: Path, tmp: Path, psi: int) -> dict:
    """Peak memory of the train stage at ZeRO 0-3 beside the formula's model states (MiB), and the plain loop's."""
    reference = plain_torch(config, shards)["peak_memory_mb"]
    log(f"memory: plain loop, micro-batch {config.micro_batch_size}: {reference:,.0f} MiB")
    zero = {}
    for stage in range(4):
        formula = zero_model_states_mb(psi, stage)
        try:
            run = stage_run(config.model_copy(update={"zero_stage": stage}), shards, tmp)
        except StageError as exc:  # one stage failing must not cost the others
            log(f"memory: ZeRO-{stage} failed: {exc}")
            zero[str(stage)] = {"error": str(exc)[-2000:], "formula_model_states_mb": formula}
            continue
        measured = run["peak_memory_mb"]
        zero[str(stage)] = {"measured_mb": measured, "formula_model_states_mb": formula,
                            "measured_over_formula": measured / formula,
                            "peak_end_of_run_mb": run["stats"]["peak_memory_mb"]}
        if "measured_mb" in zero["0"]:
            zero[str(stage)]["over_stage0_mb"] = measured - zero["0"]["measured_mb"]
        log(f"memory: ZeRO-{stage} {measured:,.0f} MiB measured, formula's model states {formula:,.0f} MiB")
    return {"zero_memory": zero, "zero_memory_settings": {
        "psi": psi, "n_d": 1, "k": ADAM_K, "micro_batch_size": config.micro_batch_size, "steps": config.max_steps,
        "peak_memory_plain_torch_mb": reference}}


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=CONFIG.max_steps, help="optimizer steps of each MFU run")
    parser.add_argument("--zero-stage", type=int, default=2, help="of the MFU run")
    parser.add_argument("--vocab-size", type=int, default=GPT2_VOCAB, help="the model's (0: the shards' own)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="default: cost.peak_tflops(device, bf16)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the plain loop's model")
    parser.add_argument("--memory-steps", type=int, default=4)
    parser.add_argument("--memory-micro-batch", type=int, default=2)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    if args.steps < 4:
        parser.error("--steps: at least 4 (the first quarter, up to 10, is not timed)")
    if not torch.cuda.is_available():
        log("benchmarks/train_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); "
            "on CPU run benchmarks/train.py")
        sys.exit(2)
    device = torch.cuda.get_device_name()
    peak = args.peak_tflops or cost.peak_tflops(device, "bf16")
    log_every = min(CONFIG.log_every, max(1, args.steps // 4))
    config = CONFIG.model_copy(update={"max_steps": args.steps, "log_every": log_every, "zero_stage": args.zero_stage,
                                       "warmup_steps": min(CONFIG.warmup_steps, args.steps)})
    with tempfile.TemporaryDirectory(prefix="llmpipe-bench-train-gpu-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            shards = tokenizer_shards(REPO / "benchmarks" / "out" / f"shakespeare_bpe{SHARDS_VOCAB}")
            data = f"tiny shakespeare, tokenizer stage byte_bpe {SHARDS_VOCAB}"
        except (SystemExit, Exception) as exc:  # no shared data here: the figures do not depend on the text
            log(f"data: no tokenizer-stage shards ({exc}); random ids instead")
            shards, data = random_shards(tmp / "random", args.vocab_size or GPT2_VOCAB), "random ids"
        shards_vocab = TokenShards(shards, "train").vocab_size
        if args.vocab_size and args.vocab_size != shards_vocab:
            shards = widened(shards, args.vocab_size, tmp / "widened")
        vocab = TokenShards(shards, "train").vocab_size
        log(f"device {device}, peak {peak} TFLOPS bf16; data: {data}, model vocabulary {vocab}")

        log(f"MFU: plain PyTorch loop ({'compiled' if args.compile else 'eager'}), {args.steps} steps")
        plain = plain_torch(config, shards, args.compile)
        m = config.model
        flops = flops_per_token(plain["params"], m.n_layer, m.n_embd, m.block_size)
        log(f"MFU: plain {plain['tokens_per_s']:,.0f} tokens/s, {plain['params']:,} params; now the train stage "
            f"(ZeRO-{args.zero_stage})")
        try:
            ours = stage_run(config, shards, tmp)
            log(f"MFU: train stage {ours['tokens_per_s']:,.0f} tokens/s "
                f"(its own figure, over every step: {ours['stats']['tokens_per_s']:,.0f})")
        except StageError as exc:  # still measure memory and print the plain loop's figures
            log(f"MFU: the train stage failed: {exc}")
            ours = {"tokens_per_s": None, "stats": {"error": str(exc)[-2000:]}, "peak_memory_mb": None}
        stats = ours["stats"]

        def mfu(tokens_per_s: float | None) -> float | None:
            return cost.mfu(tokens_per_s, flops, peak) if peak and tokens_per_s else None

        figures = {
            "benchmark": "train_gpu", "device": device, "data": data, "vocab_size": vocab,
            "shards_vocab_size": shards_vocab, "params": plain["params"], "params_total": plain["params_total"],
            "flops_per_token": flops, "peak_tflops": peak, "zero_stage": args.zero_stage, "steps": args.steps,
            "timed_steps": args.steps - log_every, "micro_batch_size": config.micro_batch_size,
            "grad_accum_steps": config.grad_accum_steps,
            "mfu": mfu(ours["tokens_per_s"]), "mfu_plain_torch": mfu(plain["tokens_per_s"]),
            "mfu_ratio_vs_torch": ours["tokens_per_s"] / plain["tokens_per_s"] if ours["tokens_per_s"] else None,
            "tokens_per_s": ours["tokens_per_s"], "tokens_per_s_plain_torch": plain["tokens_per_s"],
            "plain_torch_compiled": args.compile, "mfu_stage_reported": stats.get("mfu"),
            "tokens_per_s_stage_reported": stats.get("tokens_per_s"), "stage_error": stats.get("error"),
            "final_loss": stats.get("final_loss"), "final_loss_plain_torch": plain["final_loss"],
            "peak_memory_mb": ours["peak_memory_mb"], "peak_memory_plain_torch_mb": plain["peak_memory_mb"],
        }
        if not args.skip_memory:
            figures.update(bench_memory(config.model_copy(update={
                "micro_batch_size": args.memory_micro_batch, "grad_accum_steps": 1, "max_steps": args.memory_steps,
                "warmup_steps": 1, "log_every": args.memory_steps}), shards, tmp, plain["params_total"]))

    figures.update({"wall_s": time.perf_counter() - started, "torch": torch.__version__,
                    "deepspeed": version("deepspeed"), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")})
    print(json.dumps(rounded(figures)))


if __name__ == "__main__":
    main()
