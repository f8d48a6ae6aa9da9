"""The continuation task: does the model continue held-out text the way it goes on?

A passage is ``passage_length`` consecutive tokens of one document: its first
``prompt_fraction`` is the prompt, the rest (at most ``max_new_tokens``) the reference.
The model continues the prompt greedily for ``max_new_tokens`` tokens (cut at an
end-of-text), and the decoded continuations are scored against the decoded references
with BLEU and ROUGE (llm_core.evaluate.metrics). Greedy and evenly spaced passages make
the task deterministic: the same model and text give the same scores.

Passages come from the first configured dataset (each document cut into passages), or,
without one, from the validation windows cut at their end-of-text tokens.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from tokenizers import Tokenizer

from llm_core.evaluate.config import ContinuationConfig
from llm_core.models.generate import generate
from llm_core.evaluate.metrics import bleu, rouge

EXAMPLES = 3  # pairs shown in the report


def passage_length(config: ContinuationConfig, block_size: int) -> int:
    """Long enough for a reference of ``max_new_tokens``, short enough for the model's context."""
    return min(block_size, math.ceil(config.max_new_tokens / (1 - config.prompt_fraction)))


def document_passages(token_docs: Sequence[Sequence[int]], length: int) -> list[list[int]]:
    """Consecutive, non-overlapping passages of ``length`` tokens from each document."""
    return [list(doc[i : i + length]) for doc in token_docs for i in range(0, len(doc) - length + 1, length)]


def window_passages(windows: Sequence[np.ndarray], eot_id: int, length: int) -> list[list[int]]:
    """Passages from the validation windows: each window's runs between end-of-text tokens."""
    runs = []
    for window in windows:
        cuts = np.flatnonzero(window == eot_id)
        runs += [r.tolist() for r in np.split(window, cuts) if len(r)]
    runs = [r[1:] if r[0] == eot_id else r for r in runs]
    return document_passages(runs, length)


def spread(items: Sequence, count: int) -> list:
    """``count`` items evenly spaced over the sequence (all of them when there are fewer)."""
    if len(items) <= count:
        return list(items)
    return [items[i * len(items) // count] for i in range(count)]


def continuation_task(model, tokenizer: Tokenizer, passages: Sequence[Sequence[int]], config: ContinuationConfig,
                      eot_id: int) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The task's metrics (BLEU, its signature, ROUGE-1/2/L F1) and the first few examples."""
    chosen = spread(passages, config.num_docs)
    if not chosen:
        return {"passages": 0}, []
    device = next(model.parameters()).device
    cut = max(1, round(len(chosen[0]) * config.prompt_fraction))
    prompts = torch.tensor([p[:cut] for p in chosen], dtype=torch.long, device=device)
    out = generate(model, prompts, config.max_new_tokens, greedy=True)[:, cut:].tolist()
    hypotheses = [tokenizer.decode(until(tokens, eot_id)).strip() for tokens in out]
    references = [tokenizer.decode(p[cut : cut + config.max_new_tokens]).strip() for p in chosen]
    score, signature = bleu(hypotheses, references)
    metrics = {"passages": len(chosen), "prompt_tokens": cut, "bleu": round(score, 3), "bleu_signature": signature,
               **{k: round(v, 4) for k, v in rouge(hypotheses, references).items()}}
    examples = [{"prompt": tokenizer.decode(p[:cut]), "reference": r, "continuation": h}
                for p, r, h in zip(chosen[:EXAMPLES], references, hypotheses)]
    return metrics, examples


def until(tokens: list[int], stop: int) -> list[int]:
    return tokens[: tokens.index(stop)] if stop in tokens else tokens
