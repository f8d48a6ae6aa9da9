"""The registered model as MLflow serves it: text in, generated text out.

:class:`TextGenerator` is an MLflow ``PythonModel`` holding the trained weights (``model.pt``)
and the tokenizer (``tokenizer.json``) as artifacts of the logged model, so
``mlflow models serve -m models:/NAME@champion`` answers ``{"dataframe_split": {"columns":
["prompt"], "data": [["Once upon"]]}}`` with completions, and ``mlflow.pyfunc.load_model``
gives the same in Python. Generation settings are the model's params (a request may set them).
Nothing is pickled: the model is logged from code (``llm_core/serving_model.py``) and the
weights load with ``torch.load(weights_only=True)`` into :class:`llm_core.models.GPT`.
"""

from __future__ import annotations

from typing import Any

import mlflow
import torch

# Imported here, not inside predict(): MLflow's infer_code_paths packs the llm_core modules
# imported when the model loads, and the served copy has nothing else.
from llm_core.models.generate import generate

PROMPT_COLUMN = "prompt"
DEFAULT_PARAMS = {"max_new_tokens": 48, "temperature": 0.8, "top_k": 50, "top_p": 1.0, "seed": 1337}


class TextGenerator(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.load(context.artifacts["model"], context.artifacts["tokenizer"])

    def load(self, model_file, tokenizer_file) -> "TextGenerator":
        from tokenizers import Tokenizer

        from llm_core.train import load_model

        self.model = load_model(model_file)
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        return self

    def predict(self, context, model_input, params: dict[str, Any] | None = None) -> list[str]:
        settings = {**DEFAULT_PARAMS, **(params or {})}
        prompts = prompts_of(model_input)
        generator = torch.Generator().manual_seed(int(settings["seed"]))
        completions = []
        for prompt in prompts:
            ids = self.tokenizer.encode(prompt).ids
            if not ids:
                raise ValueError("an empty prompt: give at least one character of text")
            if len(ids) >= self.model.config.block_size:
                raise ValueError(f"the prompt is {len(ids)} tokens, the model's context is "
                                 f"{self.model.config.block_size}: shorten it")
            out = generate(self.model, torch.tensor([ids]), int(settings["max_new_tokens"]),
                           temperature=float(settings["temperature"]), top_k=int(settings["top_k"]),
                           top_p=float(settings["top_p"]), generator=generator)
            completions.append(self.tokenizer.decode(out[0, len(ids):].tolist()))
        return completions


def prompts_of(model_input) -> list[str]:
    """The prompts of a request: a DataFrame's ``prompt`` column (or its only column), a list
    of strings, or one string."""
    if isinstance(model_input, str):
        return [model_input]
    if hasattr(model_input, "columns"):
        column = PROMPT_COLUMN if PROMPT_COLUMN in model_input.columns else model_input.columns[0]
        return [str(v) for v in model_input[column].tolist()]
    return [str(v) for v in model_input]


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    types = {int: "long", float: "double"}
    return ModelSignature(
        inputs=Schema([ColSpec("string")]),  # one column of prompts, whatever its name
        outputs=Schema([ColSpec("string")]),
        params=ParamSchema([ParamSpec(name, types[type(value)], value) for name, value in DEFAULT_PARAMS.items()]),
    )
