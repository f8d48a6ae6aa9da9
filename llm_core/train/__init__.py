"""Train stage: a GPT trained with DeepSpeed ZeRO, launched as ``torchrun`` worker processes."""

from llm_core.train.launch import CODE_VERSION, MODEL_FILE, load_model, train

__all__ = ["CODE_VERSION", "MODEL_FILE", "load_model", "train"]
