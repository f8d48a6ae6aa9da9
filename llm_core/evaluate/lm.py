"""Language-model evaluation on the held-out split.

The validation shards are cut into non-overlapping windows of ``block_size + 1`` tokens;
each window's tokens after the first are predicted from the ones before it. Metrics:

- ``val_loss``: mean next-token cross-entropy in nats;
- ``perplexity``: ``exp(val_loss)``;
- ``bits_per_byte``: the summed loss (in bits) of the scored tokens that are text (not
  end-of-text) divided by the UTF-8 bytes those tokens stand for. Unlike perplexity it
  does not depend on the tokenizer, so models with different vocabularies compare.

With ``max_batches`` set, all three are measured on the first batches only
(``val_tokens_scored`` says how many tokens).

Beside them, under ``datasets.<name>``: the external sets of ``evaluate.datasets``, scored
document by document with rolling windows (llm_core.evaluate.datasets), and under
``continuation``: BLEU and ROUGE of greedy continuations (llm_core.evaluate.continuation).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch.nn import functional as F

from llm_core.errors import StageError
from llm_core.evaluate.choice import load_choice_task, score_choice_docs
from llm_core.evaluate.config import EvaluateConfig
from llm_core.evaluate.continuation import continuation_task, document_passages, passage_length, window_passages
from llm_core.evaluate.datasets import STAGE, load_documents, score_dataset
from llm_core.evaluate.objective import score_objective
from llm_core.models.generate import generate
from llm_core.evaluate.report import LOSS_CURVES_PNG, loss_curves, render_html, render_report
from llm_core.tokenizer.shards import TokenShards
from llm_core.tokenizer.train import token_byte_lengths
from llm_core.train import load_model

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PROMPT_TOKENS = 8


@dataclass
class Scores:
    nll: float = 0.0  # nats, all scored targets
    tokens: int = 0
    text_nll: float = 0.0  # nats, targets that are text (not end-of-text)
    text_bytes: int = 0


@torch.no_grad()
def score(model, windows: list[np.ndarray], token_bytes: np.ndarray, batch_size: int,
          max_batches: int | None) -> Scores:
    """Sum the next-token losses over the windows, in batches of equal-length windows."""
    device = next(model.parameters()).device
    lengths = torch.from_numpy(token_bytes).to(device)
    scores, batches = Scores(), 0
    by_length: dict[int, list[np.ndarray]] = {}
    for w in windows:
        by_length.setdefault(len(w), []).append(w)
    for length, group in sorted(by_length.items(), reverse=True):
        for start in range(0, len(group), batch_size):
            if max_batches is not None and batches >= max_batches:
                break
            batch = torch.from_numpy(np.stack(group[start : start + batch_size])).to(device)
            logits, _ = model(batch[:, :-1])
            targets = batch[:, 1:].reshape(-1)
            nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets, reduction="none")
            target_bytes = lengths[targets]
            scores.nll += nll.sum().item()
            scores.tokens += targets.numel()
            scores.text_nll += nll[target_bytes > 0].sum().item()
            scores.text_bytes += int(target_bytes.sum().item())
            batches += 1
    return scores


def generate_samples(model, tokenizer: Tokenizer, prompts: list[list[int]], config: EvaluateConfig) -> list[dict[str, str]]:
    """A sample from each prompt (:func:`sample_prompts`); one seeded generator, so a rerun
    gives the same text."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(config.seed)
    samples = []
    for ids in prompts:
        prompt = torch.tensor([ids], device=device)
        out = generate(model, prompt, config.sample_tokens, temperature=config.temperature, top_k=config.top_k,
                       top_p=config.top_p, greedy=config.greedy, generator=generator)
        samples.append({"prompt": tokenizer.decode(ids), "completion": tokenizer.decode(out[0, len(ids):].tolist())})
    return samples


def sample_prompts(tokenizer: Tokenizer, windows: list[np.ndarray], config: EvaluateConfig,
                   block_size: int) -> list[list[int]]:
    """The configured prompts' tokens (each must fit the context), else the first tokens of
    ``num_samples`` evenly spread validation windows."""
    if not config.prompts:
        step = max(1, len(windows) // max(config.num_samples, 1))
        return [w[:PROMPT_TOKENS].tolist() for w in windows[::step][: config.num_samples]]
    prompts = [tokenizer.encode(p, add_special_tokens=False).ids for p in config.prompts]
    for text, ids in zip(config.prompts, prompts):
        if not ids or len(ids) >= block_size:
            raise StageError(STAGE, f"evaluate.prompts: {text[:40]!r} is {len(ids)} tokens; a prompt needs 1 to "
                             f"{block_size - 1} (the model's context is {block_size})")
    return prompts


def evaluate(config: EvaluateConfig, tokenizer_file: Path, shards_dir: Path, model_file: Path, out_dir: Path,
             history_file: Path | None = None) -> dict[str, Any]:
    """``history_file``: the train stage's ``metrics.jsonl``, plotted in the report."""
    documents = {d.name: load_documents(d) for d in config.datasets}  # a bad file fails before any scoring
    choice_docs = {t.name: load_choice_task(t.path) for t in config.choice_tasks}
    torch.manual_seed(config.seed)
    model = load_model(model_file, device="cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    if model.config.family == "gpt":
        metrics, samples, examples = evaluate_causal(model, tokenizer, config, shards_dir, documents, choice_docs)
    else:  # the evaluation sets, tasks and samples are next-token measures: a GPT's
        metrics, samples, examples = score_objective(model, shards_dir, config), [], []
        if config.datasets or config.choice_tasks or config.continuation.num_docs:
            metrics["not_scored"] = (f"evaluation sets, choice tasks and continuations score next-token prediction; "
                                     f"a {model.config.family} model is scored on its own objective only")
    report = {"metrics": metrics, "samples": samples, "continuation_examples": examples}
    (out_dir / REPORT_JSON).write_text(json.dumps(report, indent=2, ensure_ascii=False))
    curves = history_file is not None and loss_curves(history_file, out_dir / LOSS_CURVES_PNG)
    markdown = render_report(metrics, samples, examples, curves)
    (out_dir / REPORT_MD).write_text(markdown)
    (out_dir / REPORT_HTML).write_text(render_html(markdown))
    return metrics


def evaluate_causal(model, tokenizer: Tokenizer, config: EvaluateConfig, shards_dir: Path,
                    documents: dict[str, list[str]], choice_docs: dict[str, list]) -> tuple[dict, list, list]:
    """A GPT's metrics (perplexity, bits per byte, evaluation sets, tasks, continuations) and samples."""
    val = TokenShards(shards_dir, "val")
    eot_id = val.meta["eot_id"]
    windows = val.sequential_windows(model.config.block_size + 1)
    prompts = sample_prompts(tokenizer, windows, config, model.config.block_size)  # a bad one fails before scoring
    scores = score(model, windows, token_byte_lengths(tokenizer), config.batch_size, config.max_batches)
    if scores.text_bytes == 0:
        raise StageError(STAGE, "the validation split has no text tokens to score; raise "
                         "tokenizer.val_fraction or crawl more pages")
    loss = scores.nll / scores.tokens
    metrics: dict[str, Any] = {
        "val_loss": round(loss, 5),
        "perplexity": round(math.exp(loss), 3),
        "bits_per_byte": round(scores.text_nll / (math.log(2) * scores.text_bytes), 5),
        "val_tokens_scored": scores.tokens,
        "val_tokens": val.tokens,
        "val_bytes": val.bytes,
        "params": model.num_params(),
    }
    token_docs = {}
    if config.datasets:
        metrics["datasets"] = {}
        for dataset in config.datasets:
            metrics["datasets"][dataset.name], token_docs[dataset.name] = score_dataset(
                model, tokenizer, dataset, documents[dataset.name], eot_id, config.batch_size)
    if config.choice_tasks:
        metrics["choice"] = {name: score_choice_docs(model, tokenizer, docs, eot_id, config.batch_size,
                                                     where=f"evaluate.choice_tasks[{name}]")
                             for name, docs in choice_docs.items()}
    examples = []
    if config.continuation.num_docs:
        first = config.datasets[0].name if config.datasets else None
        metrics["continuation"], examples = continue_passages(
            model, tokenizer, config, token_docs[first] if first else None, windows, eot_id)
        metrics["continuation"]["source"] = f"datasets.{first}" if first else "validation split"
    samples = generate_samples(model, tokenizer, prompts, config)
    return metrics, samples, examples


def continue_passages(model, tokenizer: Tokenizer, config: EvaluateConfig, token_docs: list[list[int]] | None,
                      windows: list[np.ndarray], eot_id: int) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The continuation task on the first dataset's documents, or else on the validation windows
    (the stage has the validation split as tokens only)."""
    length = passage_length(config.continuation, model.config.block_size)
    passages = document_passages(token_docs, length) if token_docs is not None else \
        window_passages(windows, eot_id, length)
    return continuation_task(model, tokenizer, passages, config.continuation, eot_id)
