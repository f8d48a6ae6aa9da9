"""One shape for every model family: the shared transformer's settings plus the few a family adds.

A checkpoint's ``model.pt`` stores ``TransformerConfig.to_dict()`` beside its weights; files
written before the families existed hold a subset of these fields and load as GPTs with
learned positions, which is what they are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

FAMILIES = ("gpt", "bert", "t5")
POSITIONS = ("learned", "rotary")
ATTENTIONS = ("dense", "sliding")


@dataclass
class TransformerConfig:
    vocab_size: int
    family: str = "gpt"  # gpt (decoder), bert (encoder), t5 (encoder-decoder)
    block_size: int = 128  # the training context (T5: the encoder's input)
    n_layer: int = 2  # T5: in the encoder and again in the decoder
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False
    position: str = "learned"  # learned absolute embeddings, or rotary (RoPE) in self-attention
    max_positions: int | None = None  # learned positions' table size (default block_size); rotary has none
    attention: str = "dense"  # dense, or sliding: each token sees `window` tokens each side (causal: before)
    window: int = 128
    global_tokens: int = 0  # sliding: the first tokens attend to and are attended by every token
    tie_weights: bool = True  # output projection shares the input embedding
    nsp: bool = True  # BERT: a next-sentence head beside the masked-LM head

    def __post_init__(self) -> None:
        for name, allowed in (("family", FAMILIES), ("position", POSITIONS), ("attention", ATTENTIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"model {name} {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.position == "rotary" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"rotary positions need an even head width, not {self.n_embd // self.n_head}")
        if self.position == "learned" and self.block_size > self.positions:
            raise ValueError(f"a context of {self.block_size} tokens is longer than the {self.positions} learned "
                             "positions (raise model.max_positions, or use position: rotary)")

    @property
    def positions(self) -> int:
        """How many positions the learned table holds (rotary positions are computed for any length)."""
        return self.max_positions or self.block_size

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> "TransformerConfig":
        """The config a ``model.pt`` carries; a field this code does not know is a clear error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(saved) - known)
        if unknown:
            raise ValueError(f"the model file was written by another version of llmpipe (unknown model settings "
                             f"{', '.join(unknown)}); load it with the version that trained it")
        return cls(**saved)
