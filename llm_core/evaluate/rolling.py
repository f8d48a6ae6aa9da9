"""Log-likelihood of documents longer than the model's context, by rolling windows.

The windows are lm-evaluation-harness's (``get_rolling_token_windows`` with
``make_disjoint_window``, as its ``loglikelihood_rolling`` uses them), so figures compare
with lm-eval's on the same text and tokenizer:

- the first window predicts the document's first ``max_len`` tokens, the first of them
  from ``prefix_token`` alone (end-of-text: what precedes a document in the token shards);
- every later window predicts the next ``stride`` tokens (fewer in the last one), its input
  being the ``max_len`` tokens that end just before its last predicted token.

So every token is scored exactly once, and a later window's first scored token sees
``max_len - stride + 1`` tokens of context (lm-eval's ``context_len``; the tokens after it
see more). ``stride == max_len`` is lm-eval's setting (``context_len=1``): disjoint windows,
one token carried over. A smaller stride gives every token more context (a lower loss, at
``max_len / stride`` times the compute).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

Window = tuple[list[int], list[int]]  # (input tokens, the tokens predicted by its last positions)
IGNORE = -100


def rolling_windows(tokens: Sequence[int], max_len: int, stride: int | None = None, *, prefix_token: int) -> list[Window]:
    """The (input, predicted) windows of one document, in order; ``stride`` None is ``max_len``.

    A window's predicted tokens are the targets of its input's last ``len(predicted)``
    positions (the input may be shorter than ``max_len`` only for a short document)."""
    stride = max_len if stride is None else stride
    if not 1 <= stride <= max_len:
        raise ValueError(f"stride must be between 1 and max_len={max_len}, got {stride}")
    tokens = [int(t) for t in tokens]
    if not tokens:
        return []
    first = min(max_len, len(tokens))
    windows = [([prefix_token] + tokens[: first - 1], tokens[:first])]
    done = first
    while done < len(tokens):
        count = min(len(tokens) - done, stride)
        end = done + count
        windows.append((tokens[end - max_len - 1 : end - 1], tokens[done:end]))
        done = end
    return windows


@torch.no_grad()
def document_loglikelihoods(model, token_ids_per_doc: Sequence[Sequence[int]], *, prefix_token: int,
                            stride: int | None = None, batch_size: int = 8) -> list[tuple[float, int]]:
    """Per document: (summed negative log-likelihood in nats, tokens scored), scored by rolling
    windows of the model's block size. Windows of equal input length share a batch, whatever
    document they come from; the sums are kept in float64."""
    max_len = model.config.block_size
    device = next(model.parameters()).device
    windows = [(doc, w) for doc, tokens in enumerate(token_ids_per_doc)
               for w in rolling_windows(tokens, max_len, stride, prefix_token=prefix_token)]
    nll = np.zeros(len(token_ids_per_doc), dtype=np.float64)
    counts = np.zeros(len(token_ids_per_doc), dtype=np.int64)
    by_length: dict[int, list[tuple[int, Window]]] = {}
    for doc, window in windows:
        by_length.setdefault(len(window[0]), []).append((doc, window))
    for length, group in by_length.items():
        for start in range(0, len(group), batch_size):
            chunk = group[start : start + batch_size]
            inputs = torch.tensor([w[0] for _, w in chunk], dtype=torch.long)
            targets = torch.full_like(inputs, IGNORE)
            for row, (_, (_, predicted)) in enumerate(chunk):
                targets[row, length - len(predicted):] = torch.tensor(predicted, dtype=torch.long)
            inputs, targets = inputs.to(device), targets.to(device)
            logits, _ = model(inputs)
            losses = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                                     ignore_index=IGNORE, reduction="none").reshape(len(chunk), length)
            for row, total in enumerate(losses.double().sum(dim=1).tolist()):
                doc = chunk[row][0]
                nll[doc] += total
                counts[doc] += len(chunk[row][1][1])
    return [(float(n), int(c)) for n, c in zip(nll, counts)]
