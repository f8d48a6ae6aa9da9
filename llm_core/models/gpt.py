"""GPT: a decoder-only causal language model, after nanoGPT's model.py.

Token (+ learned position) embeddings, causal pre-norm blocks, a final norm and an output
projection tied to the token embeddings. The loss is next-token cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from llm_core.models.block import Block, count_params, cross_entropy, embed, flops_per_token, init_weights, keys_seen, \
    position_table
from llm_core.models.config import TransformerConfig


class GPT(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config, causal=True) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.transformer.wpe = position_table(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        init_weights(self, config.n_layer)
        if config.tie_weights:
            self.transformer.wte.weight = self.lm_head.weight

    def num_params(self) -> int:
        return count_params(self)

    def flops_per_token(self) -> float:
        return flops_per_token(self.num_params(), self.config.n_layer, self.config.n_embd, keys_seen(self.config))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        t = self.transformer
        x = embed(idx, t.wte, t.wpe, t.drop)
        for block in t.h:
            x = block(x)
        logits = self.lm_head(t.ln_f(x))  # (B, T, vocab)
        return logits, None if targets is None else cross_entropy(logits, targets)
