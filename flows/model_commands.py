"""``llmpipe generate`` and ``llmpipe evaluate``: a registered model, outside the pipeline.

    llmpipe generate --model models:/NAME@champion --prompt "Once upon" [--max-new-tokens 48 ...]
    llmpipe evaluate --model models:/NAME/3 --data FILE [--stride N]

Both read the registry of the config's project (its MLflow store), download the version's
files (plain weights and tokenizer) into a temporary folder and use the code the pipeline
uses: the served model's generation (llm_core.serving) and the evaluate stage's scoring of
external sets (llm_core.evaluate.datasets). Nothing in the registry changes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from llm_core.config import PipelineConfig
from llm_core.errors import PipelineError


def registered_files(config: PipelineConfig, uri: str, dst: Path):
    from llm_core import registry, tracking

    tracking.configure(config.project)
    files = registry.download_registered(uri, dst)
    if files.tokenizer_file is None:
        raise PipelineError(f"{uri} has no tokenizer.json: it was not registered by this pipeline")
    return files


def generate(config: PipelineConfig, uri: str, prompt: str, params: dict[str, Any]) -> str:
    from llm_core.serving import TextGenerator

    with tempfile.TemporaryDirectory() as tmp:
        files = registered_files(config, uri, Path(tmp))
        generator = TextGenerator().load(files.model_file, files.tokenizer_file)
    try:
        (completion,) = generator.predict(None, [prompt], params)
    except ValueError as exc:  # an empty prompt, one longer than the context
        raise PipelineError(f"{uri}: {exc}") from None
    return completion


def evaluate_file(config: PipelineConfig, uri: str, data: Path, stride: int | None, batch_size: int) -> dict[str, Any]:
    """The evaluate stage's metrics of an external set (bits per byte, word / byte / token
    perplexity, rolling windows of ``stride``) for a registered model on ``data``."""
    from tokenizers import Tokenizer

    from llm_core.evaluate.config import EvalDataset
    from llm_core.evaluate.datasets import load_documents, score_dataset
    from llm_core.tokenizer.train import EOT_TOKEN
    from llm_core.train import load_model

    dataset = EvalDataset(name="data", path=str(data), stride=stride)
    docs = load_documents(dataset)  # an empty or non-UTF-8 file fails before anything is downloaded
    with tempfile.TemporaryDirectory() as tmp:
        files = registered_files(config, uri, Path(tmp))
        model = load_model(files.model_file)
        tokenizer = Tokenizer.from_file(str(files.tokenizer_file))
    eot_id = tokenizer.token_to_id(files.eot_token or EOT_TOKEN)
    if eot_id is None:
        raise PipelineError(f"{uri}: its tokenizer has no end-of-text token ({files.eot_token or EOT_TOKEN})")
    metrics, _ = score_dataset(model, tokenizer, dataset, docs, eot_id, batch_size)
    return {"model": uri, "version": files.version, "data": str(data), **metrics}
