"""Train a byte-level BPE tokenizer (Hugging Face ``tokenizers``) and pack the corpus.

Documents are split into train / validation by a hash of their id, so the split is the
same in every run and a document never straddles the two. The tokenizer sees only the
training split; every document ends with the end-of-text token in the shards.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow.parquet as pq
from tokenizers import ByteLevelBPETokenizer, Tokenizer
from tokenizers.pre_tokenizers import ByteLevel

from llm_core.tokenizer.config import TokenizerConfig
from llm_core.documents import DOCS_DIR
from llm_core.errors import StageError
from llm_core.tokenizer.shards import META_FILE, ShardWriter, token_dtype

STAGE = "tokenizer"
TOKENIZER_FILE = "tokenizer.json"
EOT_TOKEN = "<|endoftext|>"
SHARDS_DIR = "shards"
log = logging.getLogger(__name__)


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray:
    """UTF-8 bytes each token id stands for (0 for special tokens such as end-of-text).

    Exact for byte-level BPE, where every character of a token is one byte; decoding a
    single id instead would garble tokens that hold part of a multi-byte character."""
    alphabet = set(ByteLevel.alphabet())  # the 256 characters that stand for the 256 bytes
    lengths = np.zeros(tokenizer.get_vocab_size(), dtype=np.int64)
    special = {t.content for t in tokenizer.get_added_tokens_decoder().values()}
    for token, token_id in tokenizer.get_vocab().items():
        if token not in special:
            lengths[token_id] = sum(1 for ch in token if ch in alphabet)
    return lengths


def is_validation(doc_id: str, val_fraction: float) -> bool:
    bucket = int.from_bytes(hashlib.sha256(doc_id.encode()).digest()[:8], "big") / 2**64
    return bucket < val_fraction


def iter_documents(docs_dir: Path, batch_size: int = 512) -> Iterator[tuple[str, str]]:
    for f in sorted(Path(docs_dir).glob("*.parquet")):
        for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=["id", "text"]):
            yield from zip(batch.column("id").to_pylist(), batch.column("text").to_pylist())


def split_documents(docs_dir: Path, val_fraction: float) -> dict[str, list[str]]:
    splits: dict[str, list[str]] = {"train": [], "val": []}
    for doc_id, text in iter_documents(docs_dir):
        splits["val" if is_validation(doc_id, val_fraction) else "train"].append(text)
    if len(splits["train"]) + len(splits["val"]) < 2:
        raise StageError(STAGE, f"need at least 2 documents to make a train/validation split, got "
                         f"{len(splits['train']) + len(splits['val'])} in {docs_dir}")
    # A tiny corpus can hash every document to one side: move one across so both splits exist.
    if not splits["val"]:
        splits["val"].append(splits["train"].pop())
    if not splits["train"]:
        splits["train"].append(splits["val"].pop())
    return splits


def train_tokenizer(texts: list[str], config: TokenizerConfig) -> Tokenizer:
    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(
        texts, vocab_size=config.vocab_size, min_frequency=config.min_frequency,
        special_tokens=[EOT_TOKEN], show_progress=False,
    )
    return bpe._tokenizer  # the plain Tokenizer: what tokenizer.json holds and every consumer loads


def encode_split(tokenizer: Tokenizer, texts: list[str], writer: ShardWriter, batch: int = 256) -> int:
    eot = tokenizer.token_to_id(EOT_TOKEN)
    for start in range(0, len(texts), batch):
        for encoding in tokenizer.encode_batch(texts[start : start + batch]):
            writer.write(encoding.ids + [eot])
    return writer.tokens


def build_tokenizer_and_shards(config: TokenizerConfig, docs_dir: Path, out_dir: Path) -> dict[str, Any]:
    splits = split_documents(Path(docs_dir), config.val_fraction)
    tokenizer = train_tokenizer(splits["train"], config)
    tokenizer.save(str(out_dir / TOKENIZER_FILE))
    vocab_size = tokenizer.get_vocab_size()
    dtype = token_dtype(vocab_size)
    shard_dir = out_dir / SHARDS_DIR
    shard_dir.mkdir()
    meta: dict[str, Any] = {"dtype": dtype.name, "vocab_size": vocab_size, "eot_id": tokenizer.token_to_id(EOT_TOKEN), "splits": {}}
    for split, texts in splits.items():
        writer = ShardWriter(shard_dir, split, dtype, config.shard_tokens)
        tokens = encode_split(tokenizer, texts, writer)
        meta["splits"][split] = {
            "files": writer.close(),
            "docs": len(texts),
            "tokens": tokens,
            "bytes": sum(len(t.encode("utf-8")) for t in texts),
        }
        log.info("tokenizer: %s split, %d docs, %d tokens", split, len(texts), tokens)
    (shard_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    val = meta["splits"]["val"]
    train = meta["splits"]["train"]
    return {
        "vocab_size": vocab_size,
        "train_docs": train["docs"],
        "val_docs": val["docs"],
        "train_tokens": train["tokens"],
        "val_tokens": val["tokens"],
        # Fewer bytes per token = a tokenizer that compresses this corpus better.
        # (end-of-text tokens are not text, so they are not counted).
        "train_bytes_per_token": round(train["bytes"] / max(train["tokens"] - train["docs"], 1), 4),
        "val_bytes_per_token": round(val["bytes"] / max(val["tokens"] - val["docs"], 1), 4),
    }
