"""A trained model of this pipeline as an lm-evaluation-harness model (``lm_eval``, extra ``lm-eval``).

Importing this module registers the model class ``llmpipe`` with lm-eval (``@register_model``);
nothing else in ``llm_core`` imports ``lm_eval``. In Python::

    import lm_eval
    from lm_eval.tasks import TaskManager
    from llm_core.evaluate.lm_eval_adapter import LLMPipeLM

    lm = LLMPipeLM.create_from_arg_string("model=models:/gpt@champion")   # or:
    lm = LLMPipeLM(model_file="model.pt", tokenizer_file="tokenizer.json")
    results = lm_eval.simple_evaluate(model=lm, tasks=["my_task"],
                                      task_manager=TaskManager(include_path="my_tasks/"))

or from the shell, lm-eval's own command line with the class registered::

    python -m llm_core.evaluate.lm_eval_adapter run --model llmpipe \\
        --model_args model=models:/gpt@champion,config=pipeline.yaml --tasks my_task --include_path my_tasks/

A ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` model is downloaded from the registry that
``config`` (a pipeline YAML: its project's MLflow store) names, or else from MLflow's current
tracking URI (``MLFLOW_TRACKING_URI``). Any task works whose data lm-eval can read: a task of
the harness whose Hugging Face dataset is in the local cache, or a YAML task of one's own with
``dataset_path: json`` and local ``data_files``.

The three request types use the code the evaluate stage uses, so the figures agree with it:

- ``loglikelihood``: llm_core.evaluate.choice.loglikelihoods (lm-eval's tokenization and left
  truncation, an empty context conditioned on end-of-text);
- ``loglikelihood_rolling``: llm_core.evaluate.rolling.document_loglikelihoods (lm-eval's
  disjoint windows of the model's block size, the first conditioned on end-of-text);
- ``generate_until``: llm_core.models.generate.generate, greedy unless ``do_sample`` (then
  ``temperature``, ``top_k``, ``top_p`` and the ``seed`` given to the model), at most
  ``max_gen_toks`` tokens (default 256), cut at the first ``until`` string or end-of-text.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from tokenizers import Tokenizer

from llm_core.evaluate.choice import loglikelihoods
from llm_core.registry import MODELS_SCHEME
from llm_core.evaluate.rolling import document_loglikelihoods
from llm_core.models.generate import generate
from llm_core.tokenizer.train import EOT_TOKEN

GENERATION_STEP = 16  # tokens generated between two looks for a stop string


def as_int(value: Any, default: int) -> int:
    """lm-eval passes ``batch_size`` as given on its command line: ``8``, ``"8"``, ``"auto"``..."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@register_model("llmpipe")
class LLMPipeLM(LM):
    """This pipeline's GPT and tokenizer behind lm-eval's ``LM`` interface.

    Give ``model``: a loaded GPT (then ``tokenizer`` too, a ``tokenizers.Tokenizer``) or a
    ``models:/`` URI; or ``model_file`` (the train stage's ``model.pt``) and ``tokenizer_file``.
    ``eot_token``: the end-of-text token (default: the registered version's, else ``<|endoftext|>``)."""

    def __init__(self, model: Any = None, model_file: str | Path | None = None,
                 tokenizer_file: str | Path | None = None, tokenizer: Tokenizer | None = None,
                 eot_token: str | None = None, config: str | Path | None = None, device: str | None = None,
                 batch_size: int | str | None = 8, max_gen_toks: int = 256, seed: int = 1234,
                 **unused: Any) -> None:
        super().__init__()
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if isinstance(model, str):
            if not model.startswith(MODELS_SCHEME):
                raise ValueError(f"model={model!r}: give a registered model as models:/NAME/VERSION or "
                                 "models:/NAME@ALIAS, or model_file=... and tokenizer_file=...")
            model, tokenizer, eot_token = self._registered(model, config, device, eot_token)
        elif model is None:
            if model_file is None or tokenizer_file is None:
                raise ValueError("give model=models:/NAME@ALIAS, or model_file=... and tokenizer_file=...")
            from llm_core.train import load_model

            model = load_model(Path(model_file), device=device)
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        elif tokenizer is None:
            raise ValueError("a loaded model needs its tokenizer (tokenizer=...)")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.eot_token = eot_token or EOT_TOKEN
        eot_id = tokenizer.token_to_id(self.eot_token)
        if eot_id is None:
            raise ValueError(f"the tokenizer has no end-of-text token {self.eot_token!r} (give eot_token=...)")
        self.eot_token_id = eot_id
        self._device = next(model.parameters()).device
        self.batch_size = as_int(batch_size, 8)
        self.max_gen_toks = int(max_gen_toks)
        self.seed = int(seed)

    @staticmethod
    def _registered(uri: str, config: str | Path | None, device: str, eot_token: str | None):
        from llm_core import registry, tracking
        from llm_core.train import load_model

        if config is not None:
            from llm_core.config import load_config

            tracking.configure(load_config(config).project)
        with tempfile.TemporaryDirectory() as tmp:
            files = registry.download_registered(uri, Path(tmp))
            return (load_model(files.model_file, device=device), Tokenizer.from_file(str(files.tokenizer_file)),
                    eot_token or files.eot_token)

    @property
    def max_length(self) -> int:
        return self.model.config.block_size

    @property
    def tokenizer_name(self) -> str:
        return "llmpipe"

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        args = [tuple(r.args) for r in requests]
        results = loglikelihoods(self.model, self.tokenizer, args, self.eot_token_id, self.batch_size)
        for arg, result in zip(args, results):
            self.cache_hook.add_partial("loglikelihood", arg, result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        texts = [r.args[0] for r in requests]
        tokens = [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)] if texts else []
        sums = document_loglikelihoods(self.model, tokens, prefix_token=self.eot_token_id,
                                       batch_size=self.batch_size)
        results = [-nll for nll, _ in sums]
        for text, result in zip(texts, results):
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), result)
        return results

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        eos = self.tokenizer.decode([self.eot_token_id], skip_special_tokens=False)
        generator = torch.Generator(device=self._device).manual_seed(self.seed)
        results = []
        for request in requests:
            context, gen_kwargs = request.args
            kwargs = normalize_gen_kwargs(gen_kwargs or {}, self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            text = self._generate(context, until, kwargs, generator)
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
            results.append(text)
        return results

    def _generate(self, context: str, until: list[str], kwargs: dict, generator: torch.Generator) -> str:
        tokens = self.tokenizer.encode(context, add_special_tokens=False).ids or [self.eot_token_id]
        idx = torch.tensor([tokens[-self.max_length:]], dtype=torch.long, device=self._device)
        left = int(kwargs["max_gen_toks"])
        # do_sample without a temperature samples at 1.0 (as Hugging Face's generate does); at 0.0, greedy
        temperature = float(kwargs.get("temperature", 1.0))
        sample = bool(kwargs.get("do_sample")) and temperature > 0.0
        options = dict(greedy=not sample, generator=generator, temperature=temperature if sample else 1.0,
                       top_k=kwargs.get("top_k"), top_p=kwargs.get("top_p"))
        new: list[int] = []
        while left > 0:
            # generate() sees the last block_size tokens at each step, so steps of a few tokens give
            # what one call would; in between, the text is checked for a stop string.
            step = min(GENERATION_STEP, left)
            out = generate(self.model, idx, step, **options)
            new += out[0, -step:].tolist()
            idx = out[:, -self.max_length:]
            left -= step
            if self.eot_token_id in new:
                new = new[: new.index(self.eot_token_id)]
                break
            if any(s and s in self.tokenizer.decode(new) for s in until):
                break
        return postprocess_generated_text(self.tokenizer.decode(new), until, None)


def main() -> None:
    """lm-eval's command line (``lm_eval ...``) with the ``llmpipe`` model registered."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
