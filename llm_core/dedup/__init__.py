"""Dedupe stage: exact duplicates by normalised-text hash, near-duplicates by MinHash-LSH."""

from llm_core.dedup.dedupe import CODE_VERSION, dedupe

__all__ = ["CODE_VERSION", "dedupe"]
