"""Model families, pipeline parallelism and long-context attention, measured.

1. Families: a GPT (byte-level BPE), a BERT (WordPiece, masked LM + next sentence) and a T5
   (Unigram with sentinels, span corruption) of about the same size (4 layers, 128 wide; the
   T5 has 2 + 2 so its parameters match), on the same text (tiny Shakespeare through the
   tokenizer stage), each trained for the same number of AdamW steps on its own objective's
   batches in one process. Figures: steps/s, validation loss and accuracy on 8 fixed batches
   of the held-out split (next token / masked token / target token). The losses of different
   objectives do not compare with each other; each is the family's baseline for later changes.
2. Pipeline parallelism: a GPT (4 layers, 256 wide, context 128, 8 micro-batches of 4) trained
   as 2 DeepSpeed pipeline stages (2 processes, gloo, one thread each) and in one process (one
   thread) on the same batches from the same weights (``tests/pipeline_worker.py``): the largest
   difference of their per-step losses (fp32) and the throughput of each.
3. Dense vs sliding-window attention: one training step (forward + backward + AdamW) of a
   2-layer rotary GPT at sequence lengths 512 to 8192 (``--max-len``), batch 1, each length and
   kind in a fresh process so its peak resident memory (``ru_maxrss`` after the step less
   ``ru_maxrss`` before the model was built) is its own. Dense is ``scaled_dot_product_attention`` with ``is_causal``
   (PyTorch's fused CPU kernel, which does not materialise the T x T scores: its memory grows
   linearly already); ``dense_math`` the same forced onto the unfused kernel (T x T scores, what
   attention costs without a fused kernel); sliding is ``window`` 256 with 4 global tokens.

    .venv/bin/python benchmarks/models.py              # ~10 minutes on 2 cores
    .venv/bin/python benchmarks/models.py --quick      # smoke run
    .venv/bin/python benchmarks/models.py --max-len 16384

The last line of stdout is one JSON object of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from support import log, rounded  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from llm_core.models import TransformerConfig, build_model  # noqa: E402
from llm_core.models.block import param_groups  # noqa: E402
from llm_core.tokenizer.shards import TokenShards  # noqa: E402
from llm_core.tokenizer.train import SHARDS_DIR  # noqa: E402
from llm_core.train.objectives import accuracy, objective_for  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "models"
VOCAB = 2048
FAMILIES = {  # family: (tokenizer kind, its settings, layers)
    "gpt": ("byte_bpe", {}, 4),
    "bert": ("wordpiece", {}, 4),
    "t5": ("unigram", {"sentinel_tokens": 32}, 2),
}
WIDTH, HEADS, CONTEXT, BATCH, LR = 128, 4, 128, 16, 2e-3
VAL_BATCHES = 8
WINDOW, GLOBAL_TOKENS = 256, 4
KINDS = ("dense", "dense_math", "sliding")


def shards_for(kind: str, settings: dict) -> Path:
    from train import build_tokenizer

    return build_tokenizer(OUT / f"tokenizer-{kind}-{VOCAB}", VOCAB, kind, **settings) / SHARDS_DIR


# --- 1. families ---------------------------------------------------------------------------------
def train_family(family: str, steps: int) -> dict:
    kind, settings, layers = FAMILIES[family]
    shards = shards_for(kind, settings)
    data, val = TokenShards(shards, "train"), TokenShards(shards, "val")
    torch.manual_seed(0)
    model = build_model(TransformerConfig(vocab_size=data.vocab_size, family=family, n_layer=layers, n_head=HEADS,
                                          n_embd=WIDTH, block_size=CONTEXT, position="rotary"))
    objective = objective_for(family, CONTEXT, shards)
    optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=LR)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for step in range(steps):
        loss = model(**objective.batch(data, rng, BATCH))[1]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % 50 == 0:
            log(f"{family}: step {step + 1} loss {loss.item():.3f}")
    seconds = time.perf_counter() - started
    model.eval()
    val_rng, losses, right, scored = np.random.default_rng(1), [], 0, 0
    with torch.no_grad():
        for _ in range(VAL_BATCHES):
            batch = objective.batch(val, val_rng, BATCH)
            logits, loss = model(**batch)
            losses.append(loss.item())
            r, s = accuracy(logits, batch["targets"])
            right, scored = right + r, scored + s
    return {"params": model.num_params(), "steps_per_s": steps / seconds, "val_loss": float(np.mean(losses)),
            "val_accuracy": right / scored}


# --- 2. pipeline parallelism ----------------------------------------------------------------------
PIPELINE_MODEL = ["--n-layer", "4", "--n-embd", "256", "--n-head", "4", "--block-size", "128",
                  "--micro-batches", "8", "--micro-batch-size", "4"]


def bench_pipeline(steps: int) -> dict:
    """tests/pipeline_worker.py as 2 pipeline stages (torchrun) and as one process, same batches."""
    from support import shared_data

    worker = REPO / "tests" / "pipeline_worker.py"
    common = [*PIPELINE_MODEL, "--steps", str(steps), "--text", str(shared_data() / "text_tinyshakespeare" / "input.txt")]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
           "TORCH_EXTENSIONS_DIR": str(Path(sys.prefix) / "torch_extensions")}
    port = 29500 + os.getpid() % 1000
    runs = {}
    for mode, command in (("pipeline", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                        "--master_addr", "127.0.0.1", "--master_port", str(port), str(worker)]),
                          ("single", [sys.executable, str(worker), "--single"])):
        out = subprocess.run([*command, *common], capture_output=True, text=True, env=env, cwd=REPO)
        if out.returncode:
            raise SystemExit(f"{mode} run failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        runs[mode] = json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])
        log(f"pipeline bench {mode}: {runs[mode]['tokens_per_s']:.0f} tokens/s, losses {runs[mode]['losses']}")
    diffs = [abs(a - b) for a, b in zip(runs["pipeline"]["losses"], runs["single"]["losses"])]
    return {"pipeline_steps": steps, "pipeline_loss_max_abs_diff": max(diffs),
            "pipeline_tokens_per_s": runs["pipeline"]["tokens_per_s"], "single_tokens_per_s": runs["single"]["tokens_per_s"],
            "pipeline_throughput_ratio_vs_single": runs["pipeline"]["tokens_per_s"] / runs["single"]["tokens_per_s"]}


# --- 3. dense vs sliding-window attention ---------------------------------------------------------
def attention_step(kind: str, length: int) -> None:
    """Run in a child process: time one training step at ``length`` and print its figures.
    ``dense_math``: dense attention forced onto PyTorch's unfused kernel, which materialises the
    T x T scores (what attention costs without a fused kernel)."""
    from contextlib import nullcontext

    from torch.nn.attention import SDPBackend, sdpa_kernel

    imported_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the peak so far: the imports'
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=VOCAB, n_layer=2, n_head=HEADS, n_embd=WIDTH, block_size=length,
                               position="rotary", attention="sliding" if kind == "sliding" else "dense",
                               window=WINDOW, global_tokens=GLOBAL_TOKENS)
    model = build_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, VOCAB, (1, length + 1))
    times = []
    for _ in range(3):  # the first warms up
        started = time.perf_counter()
        with sdpa_kernel(SDPBackend.MATH) if kind == "dense_math" else nullcontext():
            loss = model(x[:, :-1], x[:, 1:])[1]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"step_s": min(times[1:]), "memory_mb": peak_mb - imported_mb}))


def bench_attention(max_len: int) -> dict:
    lengths, rows = [], {}
    length = 512
    while length <= max_len:
        lengths.append(length)
        length *= 2
    for length in lengths:
        for kind in KINDS:
            out = subprocess.run([sys.executable, __file__, "--attention-step", kind, str(length)], capture_output=True,
                                 text=True, check=True, cwd=REPO)
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            rows[(kind, length)] = figures
            log(f"attention {kind} T={length}: {figures['step_s']:.3f} s, +{figures['memory_mb']:.0f} MB")
    top = lengths[-1]
    figures: dict = {"attention_lengths": lengths, "window": WINDOW, "global_tokens": GLOBAL_TOKENS}
    for kind in KINDS:
        figures[f"{kind}_step_s"] = [rows[(kind, n)]["step_s"] for n in lengths]
        figures[f"{kind}_memory_mb"] = [rows[(kind, n)]["memory_mb"] for n in lengths]
    for kind in ("dense", "dense_math"):
        suffix = "" if kind == "dense" else "_vs_unfused"
        figures[f"sliding_window_memory_ratio_at_max_len{suffix}"] = \
            rows[(kind, top)]["memory_mb"] / rows[("sliding", top)]["memory_mb"]
        figures[f"sliding_window_speedup_at_max_len{suffix}"] = rows[(kind, top)]["step_s"] / rows[("sliding", top)]["step_s"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="training steps per family")
    parser.add_argument("--pipeline-steps", type=int, default=20)
    parser.add_argument("--max-len", type=int, default=8192)
    parser.add_argument("--quick", action="store_true", help="30 steps, 10 pipeline steps, lengths up to 2048")
    parser.add_argument("--parts", default="families,pipeline,attention", help="which of the three to run")
    parser.add_argument("--attention-step", nargs=2, metavar=("KIND", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attention_step:
        attention_step(args.attention_step[0], int(args.attention_step[1]))
        return
    if args.quick:
        args.steps, args.pipeline_steps, args.max_len = 30, 10, 2048
    parts = args.parts.split(",")
    figures: dict = {"threads": torch.get_num_threads()}
    if "families" in parts:
        figures["steps"] = args.steps
        for family in FAMILIES:
            for name, value in train_family(family, args.steps).items():
                figures[f"{family}_{name}"] = value
        figures["bert_mlm_accuracy"] = figures["bert_val_accuracy"]
    if "pipeline" in parts:
        figures.update(bench_pipeline(args.pipeline_steps))
    if "attention" in parts:
        figures.update(bench_attention(args.max_len))
    diff = figures.get("pipeline_loss_max_abs_diff")
    figures = rounded(figures)
    if diff is not None:  # float rounding: too small for 4 decimals
        figures["pipeline_loss_max_abs_diff"] = float(f"{diff:.2e}")
    print(json.dumps(figures))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
