"""Training checkpoints that a killed run resumes from, each complete or absent.

A checkpoint is DeepSpeed's (model, optimizer and scheduler state, every rank's ZeRO
partitions) plus what DeepSpeed does not keep: the trainer's counters (``trainer.json``) and
each rank's random state (its data sampler's and torch's, ``rng-rank<R>.pt``), without
which a resumed run would draw other batches and follow another loss curve.

DeepSpeed writes into ``<root>/<tag>/`` file by file, so a kill mid-save leaves a partial
folder. Every rank writes under a temporary tag; after a barrier rank 0 renames it to
``step-<N>`` (one ``rename``), and only renamed folders are ever loaded. The last
``keep_last`` are kept, and ``best`` (the lowest validation loss) is kept apart from them.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

TRAINER_FILE = "trainer.json"
BEST = "best"
STEP_TAG = re.compile(r"step-(\d{8})")


def step_tag(step: int) -> str:
    return f"step-{step:08d}"


def step_of(path: Path) -> int:
    """The step of a periodic checkpoint's folder."""
    return int(STEP_TAG.fullmatch(Path(path).name).group(1))


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    state = {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class Checkpoints:
    """The checkpoints of one output under ``root``; every method is called by every rank."""

    def __init__(self, root: Path, keep_last: int):
        self.root = Path(root)
        self.keep_last = keep_last

    def steps(self) -> list[int]:
        """Steps of the complete periodic checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.root.iterdir() if (m := STEP_TAG.fullmatch(p.name)))

    def latest(self) -> Path | None:
        steps = self.steps()
        return self.root / step_tag(steps[-1]) if steps else None

    def best(self) -> Path | None:
        """The best checkpoint; the one moved aside when a kill came between the two renames
        that replace it."""
        for path in (self.root / BEST, self.root / f".old-{BEST}"):
            if (path / TRAINER_FILE).is_file():
                return path
        return None

    def clear(self) -> None:
        """Remove every checkpoint (a run told not to resume); every rank calls it."""
        if dist.get_rank() == 0:
            shutil.rmtree(self.root, ignore_errors=True)
        dist.barrier()

    def save(self, engine, tag: str, trainer: dict[str, Any], rng: np.random.Generator) -> Path:
        """Write a checkpoint as ``tag`` (``step-<N>`` or ``best``, replacing an older one)."""
        rank = dist.get_rank()
        tmp_tag = f".tmp-{tag}"
        if rank == 0:
            shutil.rmtree(self.root / tmp_tag, ignore_errors=True)  # debris of a save killed midway
        dist.barrier()
        engine.save_checkpoint(str(self.root), tag=tmp_tag, save_latest=False)
        torch.save(rng_state(rng), self.root / tmp_tag / f"rng-rank{rank}.pt")
        dist.barrier()  # every rank's files are written
        final = self.root / tag
        if rank == 0:
            (self.root / tmp_tag / TRAINER_FILE).write_text(json.dumps(trainer, indent=2))
            old = self.root / f".old-{tag}"
            if final.exists():  # "best" again: move the old one aside, then drop it once replaced
                shutil.rmtree(old, ignore_errors=True)  # left by a save killed after its first rename
                final.rename(old)
            (self.root / tmp_tag).rename(final)
            shutil.rmtree(old, ignore_errors=True)
            if STEP_TAG.fullmatch(tag):
                for step in self.steps()[: -self.keep_last]:
                    shutil.rmtree(self.root / step_tag(step), ignore_errors=True)
        dist.barrier()
        return final

    def load(self, engine, path: Path, rng: np.random.Generator | None) -> dict[str, Any]:
        """Restore ``path`` into ``engine`` (and this rank's random state into ``rng`` when given);
        returns the trainer's counters saved with it."""
        loaded, _ = engine.load_checkpoint(str(path.parent), tag=path.name)
        if loaded is None:
            raise RuntimeError(f"DeepSpeed could not load the checkpoint {path}")
        if rng is not None:
            restore_rng(rng, torch.load(path / f"rng-rank{dist.get_rank()}.pt", weights_only=False))
        return json.loads((path / TRAINER_FILE).read_text())
