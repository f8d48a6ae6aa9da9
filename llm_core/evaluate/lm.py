"""Language-model evaluation on the held-out split.

The validation shards are cut into non-overlapping windows of ``block_size + 1`` tokens;
each window's tokens after the first are predicted from the ones before it. Metrics:

- ``val_loss``: mean next-token cross-entropy in nats;
- ``perplexity``: ``exp(val_loss)``;
- ``bits_per_byte``: ``val_loss * val_tokens / (ln 2 * val_bytes)``, the cost of the
  validation text's UTF-8 bytes under the model. Unlike perplexity it does not depend
  on the tokenizer, so models with different vocabularies compare.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch.nn import functional as F

from llm_core.config import EvaluateConfig
from llm_core.errors import StageError
from llm_core.tokenizer.shards import TokenShards
from llm_core.train import load_model

CODE_VERSION = "1"
STAGE = "evaluate"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PROMPT_TOKENS = 8


@torch.no_grad()
def validation_loss(model, windows: list[np.ndarray], batch_size: int, max_batches: int | None) -> tuple[float, int]:
    """Mean next-token loss (nats) and the number of tokens it was measured on."""
    device = next(model.parameters()).device
    total_nll, total_tokens, batches = 0.0, 0, 0
    by_length: dict[int, list[np.ndarray]] = {}
    for w in windows:
        by_length.setdefault(len(w), []).append(w)
    for length, group in sorted(by_length.items(), reverse=True):
        for start in range(0, len(group), batch_size):
            if max_batches is not None and batches >= max_batches:
                break
            batch = torch.from_numpy(np.stack(group[start : start + batch_size])).to(device)
            logits, _ = model(batch[:, :-1])
            targets = batch[:, 1:]
            nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), reduction="sum")
            total_nll += nll.item()
            total_tokens += targets.numel()
            batches += 1
    return total_nll / max(total_tokens, 1), total_tokens


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
    loss, tokens = validation_loss(model, windows, config.batch_size, config.max_batches)
    if tokens == 0:
        raise StageError(STAGE, "the validation split has no tokens to score; raise tokenizer.val_fraction "
                         "or crawl more pages")
    metrics = {
        "val_loss": round(loss, 5),
        "perplexity": round(math.exp(loss), 3),
        "bits_per_byte": round(loss * val.tokens / (math.log(2) * val.bytes), 5),
        "val_tokens_scored": tokens,
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
