"""Tokenizer stage: train a tokenizer on the training split, encode the corpus into packed token shards."""

from llm_core.tokenizer.shards import TokenShards
from llm_core.tokenizer.train import CODE_VERSION, EOT_TOKEN, TOKENIZER_FILE, build_tokenizer_and_shards

__all__ = ["CODE_VERSION", "EOT_TOKEN", "TOKENIZER_FILE", "TokenShards", "build_tokenizer_and_shards"]
