"""Text generation: greedy, or sampled with temperature, top-k and top-p (nucleus).

One decoding loop for every use (the evaluation report's samples and continuation task,
the served model): it uses nothing of the model but its forward pass and ``block_size``.
Sampling draws from the caller's seeded ``torch.Generator``: the same seed gives the same text.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Logits (batch, vocab) with the tokens that may not be drawn set to -inf: all but the
    ``top_k`` largest, then all but the fewest most likely whose probability sums to at least
    ``top_p`` (the most likely token always stays; ties are broken by token id)."""
    logits = logits.clone()
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k).values[:, [-1]]
        logits[logits < kth] = -float("inf")
    if top_p is not None and top_p < 1.0:
        ordered, order = torch.sort(logits, descending=True, stable=True)
        probs = F.softmax(ordered, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # probability of the tokens ranked above each one
        drop = before >= top_p
        drop[:, 0] = False
        logits[drop.new_zeros(drop.shape).scatter(1, order, drop)] = -float("inf")
    return logits


def next_token(logits: torch.Tensor, *, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, greedy: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """The next token of each row (batch, 1) from the last position's logits (batch, vocab)."""
    logits = logits.float()
    if greedy:
        return logits.argmax(dim=-1, keepdim=True)
    probs = F.softmax(filter_logits(logits / temperature, top_k, top_p), dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


@torch.no_grad()
def generate(model, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, greedy: bool = False,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """``idx`` (batch, time) followed by ``max_new_tokens`` generated tokens; the model sees
    the last ``block_size`` tokens at each step."""
    block_size = model.config.block_size
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -block_size:])
        token = next_token(logits[:, -1, :], temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
                           generator=generator)
        idx = torch.cat((idx, token), dim=1)
    return idx


@torch.no_grad()
def generate_seq2seq(model, idx: torch.Tensor, max_new_tokens: int, start_id: int, stop_id: int, *,
                     temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                     greedy: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """An encoder-decoder's output for the input ``idx`` (batch, time): the decoder starts from
    ``start_id`` and stops after ``max_new_tokens`` or when every row has produced ``stop_id``.
    Returns the generated tokens (batch, new), the start token left out."""
    memory = model.encode(idx[:, -model.config.block_size:])
    out = torch.full((idx.size(0), 1), start_id, dtype=torch.long, device=idx.device)
    done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    for _ in range(max_new_tokens):
        logits = model.decode(out, memory)
        token = next_token(logits[:, -1, :], temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
                           generator=generator)
        out = torch.cat((out, token), dim=1)
        done |= token[:, 0] == stop_id
        if done.all():
            break
    return out[:, 1:]


@torch.no_grad()
def fill_masks(model, idx: torch.Tensor, mask_id: int, segments: torch.Tensor | None = None) -> torch.Tensor:
    """A masked LM's most likely token at every ``mask_id`` position of ``idx``; others kept."""
    logits, _ = model(idx, segments)
    return torch.where(idx == mask_id, logits.argmax(dim=-1), idx)
