"""Train a byte-level BPE tokenizer, or a WordPiece or Unigram one (Hugging Face ``tokenizers``),
pack the corpus into token shards, and measure the vocabulary on held-out text.

The steps, each streaming the Parquet parts rather than holding the corpus:

1. a census: documents and bytes per split (train / validation, by a hash of the id) and language;
2. training on the training split, drawn per language (``tokenizer.sample``);
3. encoding every document into shards, in parallel (:mod:`llm_core.tokenizer.encode`);
4. the report (:mod:`llm_core.tokenizer.report`): per language, and per vocabulary size
   when ``tokenizer.sweep`` asks for more sizes.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from tokenizers import Tokenizer

from llm_core.errors import StageError
from llm_core.tokenizer.config import TokenizerConfig
from llm_core.tokenizer.corpus import STAGE, Census, TrainingText, heldout_sample, is_validation, sampling_rates, \
    sampling_table, take_census
from llm_core.tokenizer.encode import encode_corpus
from llm_core.tokenizer.families import HF_CONFIG_FILE, finish, hf_config, new_tokenizer, rare_characters, \
    token_byte_lengths, without
from llm_core.tokenizer.report import measure, report_markdown
from llm_core.tokenizer.shards import META_FILE, token_dtype

if TYPE_CHECKING:
    from llm_core.spark import SparkConfig

TOKENIZER_FILE = "tokenizer.json"
REPORT_FILE = "report.md"
EOT_TOKEN = "<|endoftext|>"  # the GPT family's; ``config.eot_token`` is the configured family's
SHARDS_DIR = "shards"
# Below this much text, encoding in this process (tokenizers' threads on every core) beats
# starting Spark's workers, or its JVM when no earlier stage did; the shards are the same.
SPARK_MIN_BYTES = 64 * 2**20
TABLES = ("languages", "sampling", "sweep")
log = logging.getLogger(__name__)

__all__ = ["EOT_TOKEN", "REPORT_FILE", "SHARDS_DIR", "TABLES", "TOKENIZER_FILE", "build_tokenizer_and_shards",
           "is_validation", "token_byte_lengths", "train_tokenizer"]


def train_tokenizer(config: TokenizerConfig, text: Iterable[str], vocab_size: int | None = None) -> Tokenizer:
    """A tokenizer of the configured family trained on ``text`` (documents pulled as the
    trainer goes; Unigram reads them twice, so not a one-shot iterator), checked to be the
    vocabulary the config asked for."""
    vocab_size = vocab_size or config.vocab_size
    tokenizer, trainer = new_tokenizer(config, vocab_size)
    rare = rare_characters(text, config.character_coverage) if config.kind == "unigram" else {}
    try:
        tokenizer.train_from_iterator(without(text, rare), trainer)
    except Exception as error:  # tokenizers raises a bare Exception
        if "not large enough to contain all chars" not in str(error):
            raise
        raise StageError(STAGE, f"a unigram vocabulary of {vocab_size} tokens cannot hold every character of the "
                         f"training text that tokenizer.character_coverage={config.character_coverage} keeps "
                         "beside the 256 byte pieces; raise tokenizer.vocab_size or lower "
                         "tokenizer.character_coverage") from None
    tokenizer = finish(tokenizer, config)
    size = tokenizer.get_vocab_size()
    if size > vocab_size:
        hint = " or set tokenizer.limit_alphabet" if config.kind == "wordpiece" else ""
        raise StageError(STAGE, f"the {config.kind} vocabulary came out at {size} tokens, more than the {vocab_size} "
                         f"asked for: the training text has more distinct characters than fit beside the "
                         f"{len(config.special_tokens())} special tokens; raise tokenizer.vocab_size{hint}")
    return tokenizer


def build_tokenizer_and_shards(config: TokenizerConfig, docs_dir: Path, out_dir: Path,
                               spark: "SparkConfig | None" = None) -> dict[str, Any]:
    """The stage: tokenizer.json (+ tokenizer_config.json for ``transformers``), shards/ with
    meta.json, report.md; returns the stats (and the report's tables). ``spark`` runs the
    encoding of a corpus of ``SPARK_MIN_BYTES`` or more as Spark tasks; otherwise it runs in
    this process."""
    docs_dir, out_dir = Path(docs_dir), Path(out_dir)
    census = take_census(docs_dir, config.val_fraction)
    text = TrainingText(docs_dir, census.splitter, sampling_rates(census.train, config.sample), config.sample.seed)
    started = time.perf_counter()
    tokenizer = train_tokenizer(config, text)
    train_s = time.perf_counter() - started
    if not text.drawn:
        raise StageError(STAGE, f"the tokenizer's training sample is empty (tokenizer.sample.max_bytes="
                         f"{config.sample.max_bytes}); raise it")
    sampling, warnings = sampling_table(census, text, config.sample)
    vocab_size = tokenizer.get_vocab_size()
    if vocab_size < config.vocab_size:
        warnings.append(f"the vocabulary has {vocab_size} tokens, fewer than tokenizer.vocab_size={config.vocab_size}: "
                        "the training text holds no more distinct pieces")
    tokenizer.save(str(out_dir / TOKENIZER_FILE))
    (out_dir / HF_CONFIG_FILE).write_text(json.dumps(hf_config(config), indent=2))

    engine = spark if census.total("train").bytes + census.total("val").bytes >= SPARK_MIN_BYTES else None
    started = time.perf_counter()
    splits = write_shards(config, tokenizer, out_dir, docs_dir, census, engine)
    encode_s = time.perf_counter() - started

    heldout = heldout_sample(docs_dir, census, config.report_bytes)
    languages = measure(tokenizer, heldout)
    swept = sweep(config, text, heldout, languages, train_s, warnings) if config.sweep else []
    overall = languages[-1] if languages else {}
    stats = {
        "kind": config.kind,
        "vocab_size": vocab_size,
        "dtype": token_dtype(vocab_size, config.id_dtype).name,
        **{f"{split}_{key}": splits[split][key] for split in splits for key in ("docs", "tokens")},
        # Fewer bytes per token = a tokenizer that compresses this corpus better
        # (end-of-text tokens are not text, so they are not counted).
        **{f"{split}_bytes_per_token": round(s["bytes"] / max(s["tokens"] - s["docs"], 1), 4) for split, s in splits.items()},
        "empty_docs": census.empty,
        **{key: overall.get(key) for key in ("bytes_per_token", "tokens_per_word", "unk_rate", "vocab_used_share")},
        "train_s": round(train_s, 3),
        "encode_s": round(encode_s, 3),
        "encode_engine": "spark" if engine is not None else "local",
        "encode_tokens_per_s": round(sum(s["tokens"] for s in splits.values()) / max(encode_s, 1e-9), 1),
        "warnings": warnings,
        "languages": languages,
        "sampling": sampling,
        "sweep": swept,
    }
    (out_dir / REPORT_FILE).write_text(report_markdown(stats, TABLES))
    for warning in warnings:
        log.warning("tokenizer: %s", warning)
    return stats


def write_shards(config: TokenizerConfig, tokenizer: Tokenizer, out_dir: Path, docs_dir: Path, census: Census,
                 spark: "SparkConfig | None") -> dict[str, dict[str, Any]]:
    """Encode the corpus with the saved tokenizer into shards/ and write its meta.json."""
    vocab_size = tokenizer.get_vocab_size()
    try:
        dtype = token_dtype(vocab_size, config.id_dtype)
    except ValueError as error:
        raise StageError(STAGE, f"{error}; set tokenizer.id_dtype to uint32 or auto") from None
    eot_id = tokenizer.token_to_id(config.eot_token)
    shard_dir = out_dir / SHARDS_DIR
    shard_dir.mkdir()
    splits = encode_corpus(out_dir / TOKENIZER_FILE, docs_dir, shard_dir, census.splitter, eot_id, dtype,
                           config.shard_tokens, spark)
    meta = {"kind": config.kind, "dtype": dtype.name, "vocab_size": vocab_size, "eot_token": config.eot_token,
            "eot_id": eot_id, "splits": splits}
    (shard_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    for split, info in splits.items():
        log.info("tokenizer: %s split, %d docs, %d tokens in %d shard(s)", split, info["docs"], info["tokens"],
                 len(info["files"]))
    return splits


def sweep(config: TokenizerConfig, text: TrainingText, heldout: dict[str, list[str]], measured: list[dict[str, Any]],
          trained_s: float, warnings: list[str]) -> list[dict[str, Any]]:
    """The report's figures for every size of ``tokenizer.sweep`` and ``vocab_size``, each
    trained on the same sample and measured on the same held-out text. A size the training
    text cannot fill or fit is a warning: the stage's own tokenizer is already built."""
    rows = []
    for size in sorted({*config.sweep, config.vocab_size}):
        if size == config.vocab_size:
            by_lang, seconds = measured, trained_s
        else:
            started = time.perf_counter()
            try:
                tokenizer = train_tokenizer(config, text, size)
            except StageError as error:
                warnings.append(f"sweep size {size} skipped: {error}")
                continue
            seconds = time.perf_counter() - started
            by_lang = measure(tokenizer, heldout)
        for row in by_lang:
            rows.append({"tokenizer": f"{config.kind}-{size}", "vocab_size": size, **row, "train_s": round(seconds, 3)})
    return rows
