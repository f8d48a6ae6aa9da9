"""Launch training as ``torchrun`` worker processes and wait for them.

Training runs in child processes, never in the caller's: DeepSpeed initialises
``torch.distributed`` once per process, a crash or OOM cannot take the orchestrator down,
and the same command scales to several processes per node (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

import torch

from llm_core.train.config import TrainConfig
from llm_core.errors import StageError
from llm_core.models import GPT, GPTConfig
from llm_core.tokenizer.shards import TokenShards
from llm_core.train.worker import METRICS_FILE, MODEL_FILE, TRAIN_STATS_FILE

STAGE = "train"
log = logging.getLogger(__name__)


def worker_command(config: TrainConfig, job_file: Path) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={config.nproc_per_node}",
        "-m", "llm_core.train.worker", str(job_file),
    ]


def check_enough_tokens(config: TrainConfig, shards_dir: Path) -> None:
    """Fail before starting workers when no training window fits in the data (not worth a retry)."""
    longest = TokenShards(shards_dir, "train").longest_shard()
    if longest <= config.model.block_size + 1:
        raise StageError(STAGE, f"the largest training shard has {longest} tokens, too few for one window of "
                         f"train.model.block_size + 1 = {config.model.block_size + 1}; crawl more pages "
                         "or lower train.model.block_size")


def train(config: TrainConfig, shards_dir: Path, out_dir: Path) -> dict[str, Any]:
    check_enough_tokens(config, shards_dir)
    job_file = out_dir / "job.json"
    job_file.write_text(json.dumps({
        "config": config.model_dump(mode="json"), "shards_dir": str(shards_dir), "out_dir": str(out_dir),
    }, indent=2))
    env = dict(os.environ)
    if not torch.cuda.is_available():
        env.setdefault("DS_ACCELERATOR", "cpu")
    # DeepSpeed JIT-compiles C++ ops on first use (~30 s); keep the build cache with the
    # environment it was built for rather than in the home directory.
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // config.nproc_per_node)))
    command = worker_command(config, job_file)
    log.info("train: %s", " ".join(command))
    tail: deque[str] = deque(maxlen=40)
    with (out_dir / "train.log").open("w") as log_file, subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        for line in proc.stdout:
            log_file.write(line)
            tail.append(line.rstrip())
            if line.startswith("step "):
                log.info("train: %s", line.strip())
        returncode = proc.wait()
    if returncode != 0:
        raise StageError(
            STAGE, f"training processes exited with code {returncode}; last output:\n" + "\n".join(tail), retryable=True
        )
    return json.loads((out_dir / TRAIN_STATS_FILE).read_text())


def load_model(model_file: Path, device: str = "cpu") -> GPT:
    """The consolidated fp32 model that the train stage wrote."""
    saved = torch.load(model_file, map_location=device, weights_only=True)
    model = GPT(GPTConfig(**saved["config"]))
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval()
