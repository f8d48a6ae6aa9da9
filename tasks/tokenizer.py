"""Tokenizer training and encoding as a Prefect task: deterministic local work."""

from tasks.common import stage_task

tokenizer = stage_task("tokenizer")
