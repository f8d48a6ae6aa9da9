"""Attention for every family: rotary positions, dense or sliding-window kernels, self and cross.

Dense attention is ``scaled_dot_product_attention`` (flash attention on GPUs, a fused kernel on
CPUs). Sliding-window attention (Longformer / BigBird's local pattern) splits the sequence into
chunks of ``window`` tokens; each chunk attends to itself and its neighbours (the one before it
when causal), so scores cost ``T x 2w`` (``3w`` bidirectional) instead of ``T x T``, plus ``global_tokens`` leading tokens that every token sees and
that see every token. It is written with plain tensor ops so it runs on every backend
(``flex_attention`` needs ``torch.compile`` and a C++ toolchain on CPU).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn import functional as F

from llm_core.models.config import TransformerConfig


class Rotary(nn.Module):
    """RoPE (Su et al.): queries and keys rotated by their position, so attention scores depend
    on relative offsets and the model runs on contexts longer than it was trained on."""

    def __init__(self, head_dim: int, base: float = 10_000.0):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, heads, T, head_dim) rotated pairwise by position."""
        T = x.size(-2)
        angles = torch.outer(torch.arange(T, device=x.device, dtype=torch.float32), self.inv_freq.to(x.device))
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


def sliding_window_mask(T: int, window: int, causal: bool, global_tokens: int = 0,
                        device: torch.device | None = None) -> torch.Tensor:
    """The dense boolean mask (T, T) of the sliding-window pattern: what
    :func:`sliding_window_attention` computes without materialising it (tests compare the two)."""
    i = torch.arange(T, device=device)[:, None]
    j = torch.arange(T, device=device)[None, :]
    allowed = (i - j).abs() <= window
    allowed |= (j < global_tokens) | (i < global_tokens)
    return allowed & (j <= i) if causal else allowed


def sliding_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, causal: bool,
                             global_tokens: int = 0, dropout_p: float = 0.0) -> torch.Tensor:
    """Attention where token i sees tokens j with ``|i - j| <= window`` (``j <= i`` too when causal),
    plus the first ``global_tokens``; memory O(T * window). q, k, v: (B, heads, T, head_dim)."""
    B, H, T, D = q.shape
    w, g = window, min(global_tokens, T)
    n = -(-T // w)  # chunks of w queries
    pad = n * w - T
    span = 2 * w if causal else 3 * w  # chunk c's keys: [c*w - w, c*w + span - w), the chunk before it and itself (+ after)
    qc = F.pad(q, (0, 0, 0, pad)).reshape(B * H, n, w, D)
    kc, vc = (F.pad(t, (0, 0, w, pad + span - 2 * w)).unfold(2, span, w).transpose(-1, -2).reshape(B * H, n, span, D)
              for t in (k, v))
    i = (torch.arange(n, device=q.device)[:, None] * w + torch.arange(w, device=q.device)[None, :])[:, :, None]
    j = (torch.arange(n, device=q.device)[:, None] * w - w + torch.arange(span, device=q.device)[None, :])[:, None, :]
    allowed = ((i - j).abs() <= w) & (j >= 0) & (j < T)
    if causal:
        allowed &= j <= i
    if g:  # the global tokens' keys, beside every chunk's window (those already in the window masked out)
        jg = torch.arange(g, device=q.device)[None, None, :]
        allowed_g = ((i - jg).abs() > w) & ((jg <= i) if causal else True)
        kc = torch.cat((kc, k[:, :, :g].reshape(B * H, 1, g, D).expand(-1, n, -1, -1)), dim=2)
        vc = torch.cat((vc, v[:, :, :g].reshape(B * H, 1, g, D).expand(-1, n, -1, -1)), dim=2)
        allowed = torch.cat((allowed, allowed_g.expand(n, w, g)), dim=2)
    allowed |= i >= T  # padding queries see everything (their rows are dropped): no row is fully masked
    # An additive float mask: PyTorch's fused CPU kernel takes it (a boolean one falls back to the slower path).
    mask = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device).masked_fill_(~allowed, float("-inf"))
    out = F.scaled_dot_product_attention(qc, kc, vc, attn_mask=mask, dropout_p=dropout_p)
    out = out.reshape(B, H, n * w, D)[:, :, :T]
    if g:  # the global tokens' own rows attend to every key (every earlier one when causal)
        rows = torch.arange(T, device=q.device)[None, :] <= torch.arange(g, device=q.device)[:, None] if causal else None
        out = out.clone()
        out[:, :, :g] = F.scaled_dot_product_attention(q[:, :, :g], k, v, attn_mask=rows, dropout_p=dropout_p)
    return out


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, config: TransformerConfig, causal: bool,
           dropout_p: float) -> torch.Tensor:
    """The configured kernel over (B, heads, T, head_dim) queries, keys and values."""
    if config.attention == "sliding" and q.size(-2) > config.window + 1:
        return sliding_window_attention(q, k, v, config.window, causal, config.global_tokens, dropout_p)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal)


class SelfAttention(nn.Module):
    """Multi-head self-attention (causal for decoders), rotary positions when configured."""

    def __init__(self, config: TransformerConfig, causal: bool):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.config, self.causal = config, causal
        self.rotary = Rotary(config.head_dim) if config.position == "rotary" else None

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        return x.view(B, T, self.config.n_head, C // self.config.n_head).transpose(1, 2)  # (B, nh, T, hs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = map(self.heads, self.c_attn(x).split(C, dim=2))
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        y = attend(q, k, v, self.config, self.causal, self.config.dropout if self.training else 0.0)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class CrossAttention(nn.Module):
    """The decoder's attention over the encoder's output (T5): every target token sees every input
    token; no positions here (both sides already carry theirs)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.c_q = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.c_kv = nn.Linear(config.n_embd, 2 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.config = config

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        nh = self.config.n_head
        q = self.c_q(x).view(B, T, nh, C // nh).transpose(1, 2)
        k, v = (t.view(B, -1, nh, C // nh).transpose(1, 2) for t in self.c_kv(memory).split(C, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.config.dropout if self.training else 0.0)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))
