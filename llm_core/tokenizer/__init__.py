"""Tokenizer stage: train a BPE, WordPiece or Unigram tokenizer on the training split, encode
the corpus into packed token shards, and report how the vocabulary fits each language."""

from llm_core.documents import DOCS_DIR
from llm_core.stage import Stage
from llm_core.tokenizer.families import HF_CONFIG_FILE
from llm_core.tokenizer.shards import TokenShards
from llm_core.tokenizer.train import (EOT_TOKEN, REPORT_FILE, SHARDS_DIR, TABLES, TOKENIZER_FILE,
                                      build_tokenizer_and_shards)

STAGE = Stage(
    "tokenizer", package=__name__, inputs=("filter",),
    build=lambda config, inputs, out: build_tokenizer_and_shards(
        config.tokenizer, inputs["filter"].file(DOCS_DIR), out, spark=config.spark),
    libraries=("tokenizers",),
    artifacts=(TOKENIZER_FILE, HF_CONFIG_FILE, REPORT_FILE),
    tables=TABLES,
)

__all__ = ["EOT_TOKEN", "SHARDS_DIR", "STAGE", "TOKENIZER_FILE", "TokenShards", "build_tokenizer_and_shards"]
