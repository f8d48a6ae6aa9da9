"""The transformer block every family is built from, and the initialisation they share.

Pre-norm (GPT-2 / T5 style): ``x + attn(ln(x))``, then ``x + mlp(ln(x))``; a decoder block of
an encoder-decoder adds cross-attention between the two. Parameter names are nanoGPT's
(``ln_1``, ``attn.c_attn``, ``mlp.c_fc`` ...) so GPT checkpoints written before the families
existed load unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn import functional as F

from llm_core.models.attention import CrossAttention, SelfAttention
from llm_core.models.config import TransformerConfig


class MLP(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: TransformerConfig, causal: bool, cross: bool = False):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = SelfAttention(config, causal)
        if cross:
            self.ln_cross = nn.LayerNorm(config.n_embd, bias=config.bias)
            self.cross_attn = CrossAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        if memory is not None:
            x = x + self.cross_attn(self.ln_cross(x), memory)
        return x + self.mlp(self.ln_2(x))


def position_table(config: TransformerConfig) -> nn.Embedding | None:
    """Learned absolute positions, or None when the attention is rotary."""
    return nn.Embedding(config.positions, config.n_embd) if config.position == "learned" else None


def embed(idx: torch.Tensor, wte: nn.Embedding, wpe: nn.Embedding | None, drop: nn.Dropout,
          extra: torch.Tensor | None = None) -> torch.Tensor:
    """Token embeddings plus learned positions (when the model has them) plus ``extra`` (BERT's segments)."""
    x = wte(idx)
    if wpe is not None:
        T = idx.size(1)
        if T > wpe.num_embeddings:
            raise ValueError(f"sequence of {T} tokens exceeds the model's {wpe.num_embeddings} learned positions")
        x = x + wpe(torch.arange(T, device=idx.device))
    return drop(x if extra is None else x + extra)


def init_weights(model: nn.Module, n_layer: int) -> None:
    """GPT-2's initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layer)."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices (weights, embeddings); not biases and norms, as in GPT-2."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def count_params(model: nn.Module) -> int:
    """Parameters, each shared tensor once, position tables left out (as nanoGPT counts)."""
    seen = {id(p): p.numel() for name, p in model.named_parameters() if "wpe" not in name}
    return sum(seen.values())


def flops_per_token(n_params: int, n_layer: int, n_embd: int, block_size: int) -> float:
    """Training FLOPs per token: ``6N + 12 * n_layer * n_embd * block_size``.

    6N counts the matmuls with the weights, forward (2N) and backward (4N); the second term
    the attention scores and their weighted sum, which have no weights: 12·L·H·Q·T in PaLM's
    appendix B with H·Q = n_embd (Kaplan et al. 2020, "Scaling Laws for Neural Language
    Models", table 1; nanoGPT's ``estimate_mfu``). ``n_params``: as ``num_params()`` counts
    them (the position embedding left out, as nanoGPT does); ``block_size``: the keys each
    query sees.
    """
    return 6.0 * n_params + 12.0 * n_layer * n_embd * block_size


def keys_seen(config: TransformerConfig) -> int:
    """The keys a query attends to: the context, or the window each side plus the global tokens."""
    if config.attention == "sliding":
        return min(config.block_size, 2 * config.window + 1 + config.global_tokens)
    return config.block_size


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean token cross-entropy in fp32; targets of -1 or -100 are ignored."""
    targets = targets.masked_fill(targets < 0, -100)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-100)
