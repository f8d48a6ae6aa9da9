"""The registered model as MLflow serves it: text in, text out, as its family does it.

- GPT: the prompt's continuation.
- T5: the decoder's output for the prompt, e.g. ``"The <extra_id_0> sat"`` → ``"<extra_id_0> cat ..."``.
- BERT: the prompt with every ``[MASK]`` replaced by the most likely token.

:class:`TextGenerator` is an MLflow ``PythonModel`` holding the trained weights (``model.pt``)
and the tokenizer (``tokenizer.json``) as artifacts of the logged model, so
``mlflow models serve -m models:/NAME@champion`` answers ``{"dataframe_split": {"columns":
["prompt"], "data": [["Once upon"]]}}`` with completions, and ``mlflow.pyfunc.load_model``
gives the same in Python. Generation settings are the model's params (a request may set them).
Nothing is pickled: the model is logged from code (``llm_core/serving_model.py``) and the
weights load with ``torch.load(weights_only=True)`` into the family's model class.
"""

from __future__ import annotations

from typing import Any

import mlflow
import torch

# Imported here, not inside predict(): MLflow's infer_code_paths packs the llm_core modules
# imported when the model loads, and the served copy has nothing else.
from llm_core.models.generate import fill_masks, generate, generate_seq2seq

PROMPT_COLUMN = "prompt"
INPUT_EXAMPLES = {"gpt": "The", "bert": "The [MASK] of the", "t5": "The <extra_id_0> of the"}
DEFAULT_PARAMS = {"max_new_tokens": 48, "temperature": 0.8, "top_k": 50, "top_p": 1.0, "seed": 1337}


class TextGenerator(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.load(context.artifacts["model"], context.artifacts["tokenizer"])

    def load(self, model_file, tokenizer_file) -> "TextGenerator":
        from tokenizers import Tokenizer

        from llm_core.train import load_model

        self.model = load_model(model_file)
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.family = self.model.config.family
        return self

    def token_id(self, token: str) -> int:
        found = self.tokenizer.token_to_id(token)
        if found is None:
            raise ValueError(f"the {self.family} model's tokenizer has no {token} token")
        return found

    def predict(self, context, model_input, params: dict[str, Any] | None = None) -> list[str]:
        settings = {**DEFAULT_PARAMS, **(params or {})}
        generator = torch.Generator().manual_seed(int(settings["seed"]))
        sampling = dict(temperature=float(settings["temperature"]), top_k=int(settings["top_k"]),
                        top_p=float(settings["top_p"]), generator=generator)
        answers = []
        for prompt in prompts_of(model_input):
            ids = self.tokenizer.encode(prompt, add_special_tokens=False).ids
            if not ids:
                raise ValueError("an empty prompt: give at least one character of text")
            limit = self.model.config.block_size - (2 if self.family == "bert" else 0)
            if len(ids) >= limit:
                raise ValueError(f"the prompt is {len(ids)} tokens, the model's context is "
                                 f"{self.model.config.block_size}: shorten it")
            answers.append(self.answer(ids, int(settings["max_new_tokens"]), sampling))
        return answers

    def answer(self, ids: list[int], max_new_tokens: int, sampling: dict[str, Any]) -> str:
        if self.family == "gpt":
            out = generate(self.model, torch.tensor([ids]), max_new_tokens, **sampling)
            return self.tokenizer.decode(out[0, len(ids):].tolist())
        if self.family == "t5":
            ids = ids + [self.token_id("</s>")]
            out = generate_seq2seq(self.model, torch.tensor([ids]), max_new_tokens, self.token_id("<pad>"),
                                   self.token_id("</s>"), **sampling)
            return self.tokenizer.decode(out[0].tolist(), skip_special_tokens=False).replace("</s>", "").strip()
        mask = self.token_id("[MASK]")
        if mask not in ids:
            raise ValueError("a BERT model fills [MASK] tokens: put at least one [MASK] in the prompt")
        filled = fill_masks(self.model, torch.tensor([[self.token_id("[CLS]"), *ids, self.token_id("[SEP]")]]), mask)
        return self.tokenizer.decode(filled[0, 1:-1].tolist())


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
