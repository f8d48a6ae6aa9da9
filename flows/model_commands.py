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
    """``uri``'s files from the registry of the config's project."""
    from llm_core import registry, tracking

    tracking.configure(config.project)
    return registry.download_registered(uri, dst)


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


def evaluate_file(config: PipelineConfig, uris: list[str], data: Path, stride: int | None,
                  batch_size: int) -> dict[str, Any]:
    """The evaluate stage's metrics of an external set (bits per byte, word / byte / token
    perplexity, rolling windows of ``stride``) for a registered model on ``data``; with several
    models, each one's and their ensemble's (the average of their next-token distributions,
    llm_core.evaluate.ensemble), so a user sees whether the ensemble beats its best member."""
    from tokenizers import Tokenizer

    from llm_core.evaluate.config import EvalDataset
    from llm_core.evaluate.datasets import load_documents, score_dataset
    from llm_core.evaluate.ensemble import Ensemble
    from llm_core.fingerprint import file_digest
    from llm_core.train import load_model

    dataset = EvalDataset(name="data", path=str(data), stride=stride)
    docs = load_documents(dataset)  # an empty or non-UTF-8 file fails before anything is downloaded
    models, tokenizers, versions = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, uri in enumerate(uris):
            files = registered_files(config, uri, Path(tmp) / str(i))
            models.append(load_model(files.model_file))
            tokenizers[uri] = (file_digest(files.tokenizer_file), Tokenizer.from_file(str(files.tokenizer_file)),
                               files.eot_token)
            versions[uri] = files.version
    if len({digest for digest, _, _ in tokenizers.values()}) > 1:
        raise PipelineError(f"the models {', '.join(uris)} do not share one tokenizer: an ensemble averages "
                            "next-token distributions over one vocabulary")
    _, tokenizer, eot = tokenizers[uris[0]]
    eot_id = tokenizer.token_to_id(eot)
    if eot_id is None:
        raise PipelineError(f"{uris[0]}: its tokenizer has no end-of-text token ({eot})")

    def scored(model) -> dict[str, Any]:
        return score_dataset(model, tokenizer, dataset, docs, eot_id, batch_size)[0]

    if len(models) == 1:
        return {"model": uris[0], "version": versions[uris[0]], "data": str(data), **scored(models[0])}
    members = {uri: {"version": versions[uri], **scored(model)} for uri, model in zip(uris, models)}
    ensemble = scored(Ensemble(models))
    best = min(members.values(), key=lambda m: m["bits_per_byte"])["bits_per_byte"]
    return {"data": str(data), "members": members, "ensemble": ensemble,
            "ensemble_beats_best_member": ensemble["bits_per_byte"] < best}
