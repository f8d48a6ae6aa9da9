"""Pipeline parallelism (llm_core.train.pipeline_parallel): a GPT split into 2 DeepSpeed pipeline
stages on 2 CPU processes (gloo) trains step for step like the same GPT in one process, and its
weights export as a plain GPT ``model.pt``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4  # fp32; the runs agree to ~1e-6 (only the order of float sums differs)


def pipeline(args: list[str], port: int) -> dict:
    """``torchrun --nproc_per_node 2`` of the module's script: 2 stages; rank 0's JSON line."""
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1",
           "TORCH_EXTENSIONS_DIR": os.path.join(sys.prefix, "torch_extensions")}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(port),
                           "-m", "llm_core.train.pipeline_parallel", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith('{"mode"')]
    return json.loads(line)


def single(args: list[str]) -> dict:
    from llm_core.train.pipeline_parallel import parser, run

    return run(parser().parse_args([*args, "--single"]))


def held_out_loss(model_file, args: list[str]) -> float:
    """The exported model's loss on the script's held-out batch, computed as a plain GPT."""
    from llm_core.models import load_model
    from llm_core.train.pipeline_parallel import batches, parser

    parsed = parser().parse_args(args)
    (held_out,) = batches(parsed, 1, parsed.seed + 1)
    model = load_model(model_file)
    with torch.no_grad():
        return sum(model(x, y)[1].item() for x, y in held_out) / len(held_out)


@pytest.mark.parametrize("name, args", [
    ("tied-learned-zero1-text", ["--zero-stage", "1"]),
    ("untied-rotary-4layers-zero0", ["--untied", "--rotary", "--n-layer", "4"]),
])
def test_two_pipeline_stages_train_like_one_process(name, args, shared_data, tmp_path, unused_port):
    """Same initial weights, batches, AdamW and clipping: the per-step losses agree; the gathered
    weights load into a GPT, give the pipeline's eval loss and equal the one-process weights."""
    args = [*args, "--text", str(shared_data / "text_tinyshakespeare" / "input.txt")]
    piped = pipeline([*args, "--export", str(tmp_path / "pipe.pt")], unused_port)
    alone = single([*args, "--export", str(tmp_path / "single.pt")])

    assert len(piped["losses"]) == 5 and piped["losses"][-1] < piped["losses"][0] - 0.2, "it learns"
    diff = max(abs(a - b) for a, b in zip(piped["losses"], alone["losses"]))
    assert diff < TOLERANCE, (name, piped["losses"], alone["losses"])
    assert abs(piped["eval_loss"] - alone["eval_loss"]) < TOLERANCE

    assert abs(held_out_loss(tmp_path / "pipe.pt", args) - piped["eval_loss"]) < 1e-5
    exported = torch.load(tmp_path / "pipe.pt", weights_only=True)["state_dict"]
    reference = torch.load(tmp_path / "single.pt", weights_only=True)["state_dict"]
    assert exported.keys() == reference.keys()
    for key, tensor in reference.items():
        assert torch.allclose(exported[key], tensor, atol=TOLERANCE), key
    if "--untied" not in args:
        assert torch.equal(exported["lm_head.weight"], exported["transformer.wte.weight"]), "tied copies agree"


def test_stages_must_split_the_blocks_evenly():
    from llm_core.models.config import TransformerConfig
    from llm_core.train.pipeline_parallel import gpt_pipeline

    config = TransformerConfig(vocab_size=256, n_layer=4, n_embd=32, n_head=4, block_size=16)
    for stages in (0, 3, 8):
        with pytest.raises(ValueError, match=r"train\.pipeline_stages .* train\.model\.n_layer"):
            gpt_pipeline(config, stages)
