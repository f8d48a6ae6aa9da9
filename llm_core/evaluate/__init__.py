"""Evaluate stage: validation loss, perplexity, bits-per-byte and generated samples."""

from llm_core.evaluate.lm import REPORT_JSON, REPORT_MD, evaluate
from llm_core.stage import Stage
from llm_core.tokenizer.train import SHARDS_DIR, TOKENIZER_FILE
from llm_core.train.worker import MODEL_FILE

STAGE = Stage(
    "evaluate", package=__name__, inputs=("tokenizer", "train"),
    build=lambda config, inputs, out: evaluate(
        config.evaluate, inputs["tokenizer"].file(TOKENIZER_FILE), inputs["tokenizer"].file(SHARDS_DIR),
        inputs["train"].file(MODEL_FILE), out),
    libraries=("torch", "tokenizers"),
    artifacts=(REPORT_MD, REPORT_JSON),
)

__all__ = ["REPORT_JSON", "REPORT_MD", "STAGE", "evaluate"]
