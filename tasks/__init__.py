"""Prefect tasks over llm_core's stages, in pipeline order."""

from tasks.crawl import crawl
from tasks.dedupe import dedupe
from tasks.evaluate import evaluate
from tasks.filter import filter_
from tasks.tokenizer import tokenizer
from tasks.train import train

STAGE_TASKS = (crawl, dedupe, filter_, tokenizer, train, evaluate)

__all__ = ["STAGE_TASKS", "crawl", "dedupe", "evaluate", "filter_", "tokenizer", "train"]
