"""Pipeline parallelism (llm_core.train.pipeline_parallel): a GPT split into 2 DeepSpeed pipeline
stages on 2 CPU processes (gloo) trains step for step like the same GPT in one process, and its
weights export as a plain GPT ``model.pt``. Both runs are tests/pipeline_worker.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4  # fp32; the runs agree to ~1e-6 (only the order of float sums differs)


def start(args: list[str], port: int | None = None) -> subprocess.Popen:
    """pipeline_worker.py: with ``port``, as 2 pipeline stages under ``torchrun --nproc_per_node 2``;
    without, as the one-process reference. One thread a process: 2 cores, up to 3 processes."""
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1",
           "TORCH_EXTENSIONS_DIR": os.path.join(sys.prefix, "torch_extensions")}
    script = [str(REPO / "tests" / "pipeline_worker.py"), *args]
    command = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(port), *script] if port else [sys.executable, *script, "--single"])
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def result(process: subprocess.Popen) -> dict:
    """The JSON line the script prints (rank 0's under torchrun); its whole process group is
    stopped if it does not finish."""
    try:
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, out[-4000:] + err[-4000:]
    (line,) = [line for line in out.splitlines() if line.startswith('{"mode"')]
    return json.loads(line)


def held_out_loss(model_file, args: list[str]) -> float:
    """The exported model's loss on the script's held-out batch, computed as a plain GPT."""
    from llm_core.models import load_model
    from pipeline_worker import batches, parser

    parsed = parser().parse_args(args)
    (held_out,) = batches(parsed, 1, parsed.seed + 1)
    model = load_model(model_file)
    with torch.no_grad():
        return sum(model(x, y)[1].item() for x, y in held_out) / len(held_out)


@pytest.mark.parametrize("name, args", [
    ("tied-learned-zero0", []),
    ("untied-rotary-4layers-zero1", ["--untied", "--rotary", "--n-layer", "4", "--zero-stage", "1"]),
])
def test_two_pipeline_stages_train_like_one_process(name, args, shared_data, tmp_path, unused_port):
    """Same initial weights, batches, AdamW and clipping: the per-step losses agree; the gathered
    weights load into a GPT, give the pipeline's eval loss and equal the one-process weights."""
    args = [*args, "--text", str(shared_data / "text_tinyshakespeare" / "input.txt")]
    reference = start([*args, "--export", str(tmp_path / "single.pt")])  # beside the pipeline: saves ~5 s
    try:
        piped = result(start([*args, "--export", str(tmp_path / "pipe.pt")], unused_port))
    finally:
        alone = result(reference)

    assert len(piped["losses"]) == 5 and piped["losses"][-1] < piped["losses"][0] - 0.2, "it learns"
    diff = max(abs(a - b) for a, b in zip(piped["losses"], alone["losses"]))
    assert diff < TOLERANCE, (name, piped["losses"], alone["losses"])
    assert abs(piped["eval_loss"] - alone["eval_loss"]) < TOLERANCE

    assert abs(held_out_loss(tmp_path / "pipe.pt", args) - piped["eval_loss"]) < 1e-5
    exported = torch.load(tmp_path / "pipe.pt", weights_only=True)["state_dict"]
    trained = torch.load(tmp_path / "single.pt", weights_only=True)["state_dict"]
    assert exported.keys() == trained.keys()
    for key, tensor in trained.items():
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
