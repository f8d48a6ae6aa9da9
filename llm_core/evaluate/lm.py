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

from llm_core.evaluate.config import EvaluateConfig
from llm_core.errors import StageError
from llm_core.tokenizer.shards import TokenShards
from llm_core.tokenizer.train import token_byte_lengths
from llm_core.train import load_model

STAGE = "evaluate"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
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


def generate_samples(model, tokenizer: Tokenizer, windows: list[np.ndarray], config: EvaluateConfig) -> list[dict[str, str]]:
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(config.seed)
    samples = []
    step = max(1, len(windows) // max(config.num_samples, 1))
    for window in windows[::step][: config.num_samples]:
        prompt = torch.from_numpy(window[:PROMPT_TOKENS]).unsqueeze(0).to(device)
        out = model.generate(prompt, config.sample_tokens, temperature=config.temperature, top_k=config.top_k, generator=generator)
        samples.append({
            "prompt": tokenizer.decode(prompt[0].tolist()),
            "completion": tokenizer.decode(out[0, PROMPT_TOKENS:].tolist()),
        })
    return samples


def evaluate(config: EvaluateConfig, tokenizer_file: Path, shards_dir: Path, model_file: Path, out_dir: Path) -> dict[str, Any]:
    torch.manual_seed(config.seed)
    model = load_model(model_file, device="cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    val = TokenShards(shards_dir, "val")
    windows = val.sequential_windows(model.config.block_size + 1)
    scores = score(model, windows, token_byte_lengths(tokenizer), config.batch_size, config.max_batches)
    if scores.text_bytes == 0:
        raise StageError(STAGE, "the validation split has no text tokens to score; raise "
                         "tokenizer.val_fraction or crawl more pages")
    loss = scores.nll / scores.tokens
    metrics = {
        "val_loss": round(loss, 5),
        "perplexity": round(math.exp(loss), 3),
        "bits_per_byte": round(scores.text_nll / (math.log(2) * scores.text_bytes), 5),
        "val_tokens_scored": scores.tokens,
        "val_tokens": val.tokens,
        "val_bytes": val.bytes,
        "params": model.num_params(),
    }
    samples = generate_samples(model, tokenizer, windows, config)
    (out_dir / REPORT_JSON).write_text(json.dumps({"metrics": metrics, "samples": samples}, indent=2, ensure_ascii=False))
    (out_dir / REPORT_MD).write_text(render_report(metrics, samples))
    return metrics


def render_report(metrics: dict[str, Any], samples: list[dict[str, str]]) -> str:
    lines = ["# Evaluation report", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in metrics.items()]
    lines += ["", "## Samples", ""]
    for i, s in enumerate(samples, 1):
        lines += [f"**{i}.** _{s['prompt'].strip()}_ → {s['completion'].strip()}", ""]
    return "\n".join(lines)
