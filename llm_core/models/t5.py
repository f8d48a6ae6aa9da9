"""T5: an encoder-decoder trained to restore corrupted spans (Raffel et al. 2020), on the
shared pre-norm block.

The encoder reads the corrupted input bidirectionally; the decoder, causal, attends to its own
prefix and, through cross-attention, to the encoder's output, and predicts the target: each
sentinel followed by the span it replaced. Positions are rotary by default (T5's own relative
buckets play the same part: attention that depends on offsets, not absolute places).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from llm_core.models.block import Block, count_params, cross_entropy, embed, flops_per_token, init_weights, keys_seen, \
    position_table
from llm_core.models.config import TransformerConfig


class T5(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.shared = nn.Embedding(config.vocab_size, config.n_embd)  # both sides' token embeddings
        self.drop = nn.Dropout(config.dropout)
        self.encoder = nn.ModuleDict(dict(
            h=nn.ModuleList([Block(config, causal=False) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.decoder = nn.ModuleDict(dict(
            h=nn.ModuleList([Block(config, causal=True, cross=True) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.encoder.wpe, self.decoder.wpe = position_table(config), position_table(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        init_weights(self, 2 * config.n_layer)
        if config.tie_weights:
            self.shared.weight = self.lm_head.weight

    def num_params(self) -> int:
        return count_params(self)

    def flops_per_token(self) -> float:
        """Per input token. Span corruption's targets are about a quarter of the input's length
        (15% noise plus a sentinel per span), so the decoder (its cross-attention included)
        costs about a quarter of its weights per input token; the encoder all of its own."""
        c = self.config
        decoder = sum(p.numel() for n, p in self.named_parameters() if n.startswith("decoder.") and "wpe" not in n)
        encoder = self.num_params() - decoder
        return flops_per_token(encoder + decoder // 4, c.n_layer, c.n_embd, keys_seen(c)) + \
            flops_per_token(0, c.n_layer, c.n_embd, c.block_size) / 4  # the decoder's attention over the input

    def encode(self, idx: torch.Tensor) -> torch.Tensor:
        x = embed(idx, self.shared, self.encoder.wpe, self.drop)
        for block in self.encoder.h:
            x = block(x)
        return self.encoder.ln_f(x)

    def decode(self, decoder_idx: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = embed(decoder_idx, self.shared, self.decoder.wpe, self.drop)
        for block in self.decoder.h:
            x = block(x, memory)
        return self.lm_head(self.decoder.ln_f(x))

    def forward(self, idx: torch.Tensor, decoder_idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Logits over the target (B, T_target, vocab) given the input and the decoder's input
        (the target shifted right behind a start token), and the loss with targets."""
        logits = self.decode(decoder_idx, self.encode(idx))
        return logits, None if targets is None else cross_entropy(logits, targets)
