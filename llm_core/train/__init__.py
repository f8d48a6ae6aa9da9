"""Train stage: a GPT trained with DeepSpeed ZeRO, launched as ``torchrun`` worker processes."""

from llm_core.stage import Stage
from llm_core.tokenizer.train import SHARDS_DIR
from llm_core.train.launch import METRICS_FILE, MODEL_FILE, TRAIN_STATS_FILE, load_model, train

STAGE = Stage(
    "train", package=__name__, inputs=("tokenizer",),
    build=lambda config, inputs, out: train(config.train, inputs["tokenizer"].file(SHARDS_DIR), out),
    libraries=("torch", "deepspeed"),
    artifacts=(TRAIN_STATS_FILE,),
    history_file=METRICS_FILE,
)

__all__ = ["MODEL_FILE", "STAGE", "load_model", "train"]
