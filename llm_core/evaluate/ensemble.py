"""An ensemble of language models that share a tokenizer: the average of their next-token
distributions, p(x) = (1/n) Σ p_i(x), as one model.

Its forward pass returns log-probabilities where a model returns logits (softmax leaves them
unchanged), so every scorer and the generation loop take it as they take one model, and its
bits per byte compare directly with its members'.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn
from torch.nn import functional as F


class Ensemble(nn.Module):
    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two models")
        vocab = {m.config.vocab_size for m in members}
        if len(vocab) > 1:
            raise ValueError(f"the models' vocabularies differ ({sorted(vocab)}): an ensemble needs one tokenizer")
        self.members = nn.ModuleList(members)
        # The shortest context of the members: every member sees the same tokens.
        self.config = replace(members[0].config, block_size=min(m.config.block_size for m in members))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        log_probs = torch.stack([F.log_softmax(m(idx)[0].float(), dim=-1) for m in self.members])
        mixed = torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))
        if targets is None:
            return mixed, None
        return mixed, F.nll_loss(mixed.view(-1, mixed.size(-1)), targets.reshape(-1), ignore_index=-1)

    def num_params(self) -> int:
        return sum(m.num_params() for m in self.members)
