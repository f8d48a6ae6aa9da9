"""Evaluate stage: validation loss, perplexity, bits-per-byte, external evaluation sets,
a continuation task (BLEU, ROUGE) and generated samples."""

from pathlib import Path

from llm_core.evaluate.config import EvaluateConfig
from llm_core.evaluate.datasets import dataset_path
from llm_core.evaluate.lm import REPORT_HTML, REPORT_JSON, REPORT_MD, evaluate
from llm_core.evaluate.report import LOSS_CURVES_PNG
from llm_core.stage import Stage
from llm_core.tokenizer.train import SHARDS_DIR, TOKENIZER_FILE
from llm_core.train.monitor import METRICS_FILE
from llm_core.train.worker import MODEL_FILE


def dataset_files(config: EvaluateConfig) -> list[Path]:
    """The evaluation sets' and multiple-choice tasks' files: their content enters the key, so an
    edited file is scored again."""
    return [dataset_path(d) for d in config.datasets] + [Path(t.path).expanduser() for t in config.choice_tasks]


STAGE = Stage(
    "evaluate", package=__name__, inputs=("tokenizer", "train"),
    build=lambda config, inputs, out: evaluate(
        config.evaluate, inputs["tokenizer"].file(TOKENIZER_FILE), inputs["tokenizer"].file(SHARDS_DIR),
        inputs["train"].file(MODEL_FILE), out, history_file=inputs["train"].file(METRICS_FILE)),
    libraries=("torch", "tokenizers", "sacrebleu", "rouge-score", "nltk"),
    input_files=dataset_files,
    artifacts=(REPORT_MD, REPORT_JSON, REPORT_HTML, LOSS_CURVES_PNG),
    report=REPORT_MD,
)

__all__ = ["REPORT_JSON", "REPORT_MD", "STAGE", "dataset_files", "evaluate"]
