"""Evaluate stage: validation loss, perplexity, bits-per-byte and generated samples."""

from llm_core.evaluate.lm import CODE_VERSION, REPORT_JSON, REPORT_MD, evaluate

__all__ = ["CODE_VERSION", "REPORT_JSON", "REPORT_MD", "evaluate"]
