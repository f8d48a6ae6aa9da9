"""Pipeline parallelism for the GPT: DeepSpeed's ``PipelineModule``, one group of blocks a stage.

A pipeline splits the model by depth: stage 0 holds the embeddings and the first blocks, the
last stage the last blocks and the head, and micro-batches flow through them (1F1B schedule),
so a model too big for one device trains on several without ZeRO-3's all-gathers. The GPT is
written as the flat list of layers a ``PipelineModule`` wants (``tokens, positions, blocks...,
final norm, head``); each layer's parameters keep the GPT's names, so one mapping
(:func:`pipeline_state_to_gpt`) turns a pipeline's weights into the usual ``model.pt``.

The head shares the token embedding as in :class:`GPT`: both ends are DeepSpeed
``TiedLayerSpec("embed")``, so the first and last stage each hold a copy that DeepSpeed
broadcasts at start and whose gradients it all-reduces before each step (works on gloo).
DeepSpeed refuses ZeRO-2/3 with a pipeline (``PipelineEngine``: "ZeRO-2 and ZeRO-3 are
incompatible with pipeline parallelism"); ZeRO-0 and ZeRO-1 work.

``tests/pipeline_worker.py`` trains a tiny GPT this way and in one process (the test compares
them step for step; a benchmark can run it for tokens/s).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn import functional as F
from deepspeed.pipe import LayerSpec, PipelineModule, TiedLayerSpec

from llm_core.models.block import Block, cross_entropy, init_weights, position_table
from llm_core.models.config import TransformerConfig

FIRST_BLOCK = 2  # layer index of block 0: tokens and positions come first


class Tokens(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.wte(idx)


def tied_head(tokens: Tokens, x: torch.Tensor) -> torch.Tensor:
    """The output projection on the last stage: its copy of the token embedding, transposed."""
    return F.linear(x, tokens.wte.weight)


class Positions(nn.Module):
    """Learned positions (none when rotary) and the embedding dropout, as in :func:`~llm_core.models.block.embed`."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.wpe, self.drop = position_table(config), nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(x.size(1), device=x.device))
        return self.drop(x)


class Final(nn.Module):
    """The final norm, and the output projection when it is not tied to the token embedding."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = None if config.tie_weights else nn.Linear(config.n_embd, config.vocab_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln_f(x)
        return x if self.lm_head is None else self.lm_head(x)


def gpt_pipeline(config: TransformerConfig, num_stages: int, loss_fn=cross_entropy,
                 partition_method: str = "type:Block") -> PipelineModule:
    """The GPT as ``num_stages`` pipeline stages (needs ``torch.distributed`` initialised).

    ``type:Block`` balances the blocks, so every stage gets ``n_layer / num_stages`` of them
    (stage 0 adds the embeddings, the last stage the norm and head).
    Weights are initialised as :class:`GPT` does; the tied embedding is re-broadcast from the
    first stage afterwards, so both copies start equal."""
    if num_stages < 1 or num_stages > config.n_layer or config.n_layer % num_stages:
        raise ValueError(f"train.pipeline_stages ({num_stages}) must divide train.model.n_layer "
                         f"({config.n_layer}) so that every stage holds the same number of blocks")
    blocks = [LayerSpec(Block, config, True) for _ in range(config.n_layer)]
    if config.tie_weights:  # the last stage's copy of the token embedding is the head
        layers = [TiedLayerSpec("embed", Tokens, config, tied_weight_attr=["wte.weight"]), LayerSpec(Positions, config),
                  *blocks, LayerSpec(Final, config),
                  TiedLayerSpec("embed", Tokens, config, forward_fn=tied_head, tied_weight_attr=["wte.weight"])]
    else:
        layers = [LayerSpec(Tokens, config), LayerSpec(Positions, config), *blocks, LayerSpec(Final, config)]
    with torch.no_grad():  # else autograd records DeepSpeed's broadcast of the tied weight (a warning in backward)
        module = PipelineModule(layers, num_stages=num_stages, loss_fn=loss_fn, partition_method=partition_method)
        init_weights(module, config.n_layer)
        module._synchronize_tied_weights()  # DeepSpeed's own start-up broadcast, again after our init
    for p in module.parameters():
        # DeepSpeed's clipping norm counts a weight on stages past the first only when it is marked
        # model-parallel (Megatron's tag for tensor slices): without this, stage 0 alone sets the
        # norm. The last stage's tied copy stays unmarked, so the embedding is counted once.
        p.model_parallel = not p.ds_pipe_replicated
    return module


def gpt_names(name: str) -> list[str]:
    """The GPT state-dict name(s) of a pipeline parameter: ``"3.attn.c_attn.weight"`` (layer 3)
    is ``transformer.h.1.attn.c_attn.weight``; the tied embedding is two GPT names."""
    if name == "tied_modules.embed.wte.weight":
        return ["transformer.wte.weight", "lm_head.weight"]
    layer, rest = name.split(".", 1)
    if rest.split(".")[0] in ("wte", "wpe", "ln_f"):
        return [f"transformer.{rest}"]
    return [rest] if rest.startswith("lm_head.") else [f"transformer.h.{int(layer) - FIRST_BLOCK}.{rest}"]


def pipeline_state_to_gpt(module_state: dict) -> dict:
    """A (possibly partial: one stage's) ``PipelineModule`` state dict under :class:`GPT`'s names."""
    return {gpt: tensor for name, tensor in module_state.items() for gpt in gpt_names(name)}


def load_gpt_state_dict(module: PipelineModule, gpt_state: dict) -> None:
    """Load this stage's layers from a full GPT state dict (same start as a single-process run)."""
    module.load_state_dict({name: gpt_state[gpt_names(name)[0]] for name in module.state_dict()})


def gather_gpt_state_dict(engine) -> dict | None:
    """The whole GPT's weights on rank 0 (None elsewhere): each stage sends its layers, renamed.
    ZeRO-0/1 keep full parameters on every rank, so no ZeRO gather is needed."""
    local = pipeline_state_to_gpt({k: v.detach().cpu() for k, v in engine.module.state_dict().items()})
    parts = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(local, parts, dst=0)
    return None if parts is None else {k: v for part in parts for k, v in part.items()}
