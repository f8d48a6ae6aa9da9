"""Packed token shards: flat files of token ids, read back memory-mapped (nanoGPT's ``train.bin``).

A split is ``<split>_00000.bin, <split>_00001.bin, ...`` plus ``meta.json`` recording the
dtype (``uint16`` when the vocabulary fits, else ``uint32``), the end-of-text id that ends
every document, per-split counts and an index of each shard's tokens and documents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

META_FILE = "meta.json"


def token_dtype(vocab_size: int, choice: str = "auto") -> np.dtype:
    """``uint16`` when every id fits (or when asked), else ``uint32``; a vocabulary too large
    for the id type asked for is an error, not ids silently wrapped around."""
    if choice == "auto":
        choice = "uint16" if vocab_size <= 2**16 else "uint32"
    dtype = np.dtype(choice)
    if vocab_size - 1 > np.iinfo(dtype).max:
        raise ValueError(f"a vocabulary of {vocab_size} tokens does not fit {dtype.name} ids")
    return dtype


class ShardWriter:
    """Streams token ids into ``<split>_NNNNN.bin`` files of ``shard_tokens`` tokens each (the
    last one shorter), and indexes them: tokens and documents (end-of-text tokens) per shard.
    Holds nothing but the open file."""

    def __init__(self, directory: Path, split: str, dtype: np.dtype, shard_tokens: int, eot_id: int):
        self.directory, self.split, self.dtype, self.shard_tokens = directory, split, dtype, shard_tokens
        self.eot_id = eot_id
        self.index: list[dict[str, Any]] = []  # {"file", "tokens", "docs"} per shard
        self.tokens = 0
        self._file: BinaryIO | None = None

    def write(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=self.dtype)
        while len(ids):
            if self._file is None or self.index[-1]["tokens"] == self.shard_tokens:
                self._open_next()
            shard = self.index[-1]
            part, ids = ids[: self.shard_tokens - shard["tokens"]], ids[self.shard_tokens - shard["tokens"]:]
            part.tofile(self._file)
            shard["tokens"] += len(part)
            shard["docs"] += int(np.count_nonzero(part == self.eot_id))
            self.tokens += len(part)

    def close(self) -> list[str]:
        if self._file is not None:
            self._file.close()
            self._file = None
        return [shard["file"] for shard in self.index]

    def _open_next(self) -> None:
        self.close()
        name = f"{self.split}_{len(self.index):05d}.bin"
        self._file = (self.directory / name).open("wb")
        self.index.append({"file": name, "tokens": 0, "docs": 0})


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

    @staticmethod
    def splits(directory: Path) -> list[str]:
        """The splits written into ``directory`` (``train``, and ``val`` unless there was too little text)."""
        return list(json.loads((Path(directory) / META_FILE).read_text())["splits"])

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
