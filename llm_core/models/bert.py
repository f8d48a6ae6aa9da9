"""BERT: an encoder-only model trained to fill in masked tokens, with an optional
next-sentence head (Devlin et al. 2019), on the shared pre-norm block.

Input: ``[CLS] A [SEP] B [SEP]`` with segment ids 0 for A's part and 1 for B's. The masked-LM
head (dense, GELU, norm, output tied to the embeddings plus a bias) predicts the tokens at
masked positions (``targets`` elsewhere -100); the next-sentence head reads the pooled ``[CLS]``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn import functional as F

from llm_core.models.block import Block, count_params, cross_entropy, embed, flops_per_token, init_weights, keys_seen, \
    position_table
from llm_core.models.config import TransformerConfig

SEGMENTS = 2


class BERT(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.encoder = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wse=nn.Embedding(SEGMENTS, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config, causal=False) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.encoder.wpe = position_table(config)
        self.mlm = nn.ModuleDict(dict(
            dense=nn.Linear(config.n_embd, config.n_embd), ln=nn.LayerNorm(config.n_embd),
            decoder=nn.Linear(config.n_embd, config.vocab_size),
        ))
        if config.nsp:
            self.nsp = nn.ModuleDict(dict(pooler=nn.Linear(config.n_embd, config.n_embd),
                                          classifier=nn.Linear(config.n_embd, 2)))
        init_weights(self, config.n_layer)
        if config.tie_weights:
            self.encoder.wte.weight = self.mlm.decoder.weight

    def num_params(self) -> int:
        return count_params(self)

    def flops_per_token(self) -> float:
        return flops_per_token(self.num_params(), self.config.n_layer, self.config.n_embd, keys_seen(self.config))

    def encode(self, idx: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        e = self.encoder
        x = embed(idx, e.wte, e.wpe, e.drop, None if segments is None else e.wse(segments))
        for block in e.h:
            x = block(x)
        return e.ln_f(x)

    def forward(self, idx: torch.Tensor, segments: torch.Tensor | None = None, targets: torch.Tensor | None = None,
                nsp_labels: torch.Tensor | None = None):
        """Masked-LM logits (B, T, vocab) and, with targets, the loss: masked-LM cross-entropy
        plus the next-sentence cross-entropy when labels are given."""
        logits, loss, _ = self.heads(self.encode(idx, segments), targets, nsp_labels)
        return logits, loss

    def heads(self, hidden: torch.Tensor, targets: torch.Tensor | None = None,
              nsp_labels: torch.Tensor | None = None):
        """Both heads on the encoder's states: the masked-LM logits, the loss as ``forward``
        computes it, and the next-sentence logits when labels are given (evaluation scores
        both heads from one encoding)."""
        logits = self.mlm.decoder(self.mlm.ln(F.gelu(self.mlm.dense(hidden))))
        if targets is None:
            return logits, None, None
        loss, nsp_logits = cross_entropy(logits, targets), None
        if nsp_labels is not None:
            nsp_logits = self.next_sentence_logits(hidden)
            loss = loss + F.cross_entropy(nsp_logits.float(), nsp_labels)
        return logits, loss, nsp_logits

    def next_sentence_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """IsNext / NotNext logits from the encoder's ``[CLS]`` state (B, 2)."""
        if not self.config.nsp:
            raise ValueError("this BERT has no next-sentence head (model.nsp: false)")
        return self.nsp.classifier(torch.tanh(self.nsp.pooler(hidden[:, 0])))
