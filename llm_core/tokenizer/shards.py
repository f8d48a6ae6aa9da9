"""Packed token shards: flat files of token ids, read back memory-mapped (nanoGPT's ``train.bin``).

A split is ``<split>_00000.bin, <split>_00001.bin, ...`` plus ``meta.json`` recording the
dtype (``uint16`` when the vocabulary fits, else ``uint32``) and per-split counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

META_FILE = "meta.json"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


class ShardWriter:
    """Appends token ids to ``<split>_NNNNN.bin`` files of at most ``shard_tokens`` tokens."""

    def __init__(self, directory: Path, split: str, dtype: np.dtype, shard_tokens: int):
        self.directory, self.split, self.dtype, self.shard_tokens = directory, split, dtype, shard_tokens
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self.files: list[str] = []
        self.tokens = 0

    def write(self, ids: list[int]) -> None:
        array = np.asarray(ids, dtype=self.dtype)
        self.buffer.append(array)
        self.buffered += len(array)
        self.tokens += len(array)
        while self.buffered >= self.shard_tokens:
            self._flush(self.shard_tokens)

    def close(self) -> list[str]:
        if self.buffered:
            self._flush(self.buffered)
        return self.files

    def _flush(self, n: int) -> None:
        data = np.concatenate(self.buffer)
        name = f"{self.split}_{len(self.files):05d}.bin"
        data[:n].tofile(self.directory / name)
        self.files.append(name)
        rest = data[n:]
        self.buffer, self.buffered = ([rest] if len(rest) else []), len(rest)


class TokenShards:
    """Read side: one split's shards as memory-mapped arrays, sampled in random windows."""

    def __init__(self, directory: Path, split: str):
        self.directory = Path(directory)
        meta = json.loads((self.directory / META_FILE).read_text())
        self.meta = meta
        self.dtype = np.dtype(meta["dtype"])
        self.vocab_size: int = meta["vocab_size"]
        info = meta["splits"][split]
        self.shards = [np.memmap(self.directory / f, dtype=self.dtype, mode="r") for f in info["files"]]
        self.tokens: int = info["tokens"]
        self.bytes: int = info["bytes"]

    def longest_shard(self) -> int:
        """Tokens in the largest shard: a window longer than this cannot be drawn."""
        return max((len(s) for s in self.shards), default=0)

    def sample_windows(self, rng: np.random.Generator, count: int, length: int) -> np.ndarray:
        """``count`` random windows of ``length`` consecutive tokens, as int64 (count, length)."""
        sizes = np.array([len(s) for s in self.shards])
        eligible = np.flatnonzero(sizes > length)
        if not len(eligible):
            raise ValueError(f"no shard holds more than {length} tokens")
        shard_ids = rng.choice(eligible, size=count, p=sizes[eligible] / sizes[eligible].sum())
        windows = np.empty((count, length), dtype=np.int64)
        for row, s in enumerate(shard_ids):
            start = rng.integers(0, sizes[s] - length)
            windows[row] = self.shards[s][start : start + length]
        return windows

    def sequential_windows(self, length: int) -> list[np.ndarray]:
        """Non-overlapping windows covering every shard in order, each ``length`` tokens (the last may be shorter)."""
        windows = []
        for shard in self.shards:
            for start in range(0, len(shard) - 1, length - 1):
                window = np.asarray(shard[start : start + length], dtype=np.int64)
                if len(window) >= 2:
                    windows.append(window)
        return windows
