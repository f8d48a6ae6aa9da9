"""Megatron-LM tensor parallelism for the shared transformer block (Shoeybi et al. 2019).

In each block's attention and MLP the first linear is *column*-parallel (a rank computes its own
heads, its own share of the MLP's hidden units) and the second *row*-parallel (a rank multiplies
its slice of the inputs; the partial sums are all-reduced): one all-reduce per pair forward and
one backward. Embeddings, norms and output heads stay whole on every rank.

Not DeepSpeed's AutoTP: its training mode finds layers by HuggingFace class names or ``tp_plan``
and shrinks head-count attributes (``num_heads`` ...) on the attention module, while ours reads
``config.n_head`` from the config all modules share, so the sharded forward breaks.

Every rank builds the same model (same seed or checkpoint), calls :func:`parallelize`, then
builds its optimizer. Ranks of a group must draw the same dropout masks on replicated activations
(seed them alike) and clip with :func:`clip_grad_norm_`; :func:`gather_state_dict` reassembles
the weights for export. Shards carry ``tensor_model_parallel = True``, which DeepSpeed reads.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn import functional as F

from llm_core.models.attention import CrossAttention, SelfAttention, attend
from llm_core.models.block import Block


class _CopyToParallel(torch.autograd.Function):
    """Megatron's ``f``: the replicated input enters the parallel region as is; each rank's input
    gradient covers only its shard's outputs, so the backward sums them."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class _ReduceFromParallel(torch.autograd.Function):
    """Megatron's ``g``: the row-parallel partial sums are all-reduced; the gradient of a sum
    with respect to each term is the output gradient itself, so the backward is the identity."""

    @staticmethod
    def forward(ctx, x, group):
        x = x.contiguous().clone()
        dist.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _all_gather(shard: torch.Tensor, group) -> list[torch.Tensor]:
    pieces = [torch.empty_like(shard) for _ in range(dist.get_world_size(group))]
    dist.all_gather(pieces, shard.contiguous(), group=group)
    return pieces


def _shard_param(t: torch.Tensor) -> nn.Parameter:
    p = nn.Parameter(t.detach().clone().contiguous())
    p.tensor_model_parallel = True  # a shard: its norm is summed over the group (DeepSpeed reads this flag too)
    return p


class ColumnParallelLinear(nn.Module):
    """This rank's slice of an ``nn.Linear``'s outputs. ``parts`` > 1 for fused projections
    (q|k|v: 3, k|v: 2): each part is split, so the rank holds its heads of each of q, k and v."""

    def __init__(self, linear: nn.Linear, group=None, parts: int = 1):
        super().__init__()
        self.group, self.parts = group, parts
        world, rank = dist.get_world_size(group), dist.get_rank(group)
        out = linear.out_features // parts
        if linear.out_features % parts or out % world:
            raise ValueError(f"{linear.out_features} outputs in {parts} parts do not split across {world} ranks")
        rows = slice(rank * out // world, (rank + 1) * out // world)
        self.weight = _shard_param(linear.weight.view(parts, out, -1)[:, rows].reshape(-1, linear.in_features))
        self.bias = None if linear.bias is None else _shard_param(linear.bias.view(parts, out)[:, rows].reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(_CopyToParallel.apply(x, self.group), self.weight, self.bias)

    def unshard(self, shard: torch.Tensor) -> torch.Tensor:
        """The full tensor from every rank's ``shard`` of the weight or bias (or their gradients);
        a collective: every rank calls it."""
        pieces = [p.view(self.parts, -1, *shard.shape[1:]) for p in _all_gather(shard, self.group)]
        return torch.cat(pieces, dim=1).flatten(0, 1)


class RowParallelLinear(nn.Module):
    """This rank's slice of an ``nn.Linear``'s inputs (the column-parallel outputs before it);
    the partial products are all-reduced and the bias, kept whole, is added once after."""

    def __init__(self, linear: nn.Linear, group=None):
        super().__init__()
        self.group = group
        world, rank = dist.get_world_size(group), dist.get_rank(group)
        if linear.in_features % world:
            raise ValueError(f"{linear.in_features} inputs do not split across {world} ranks")
        cols = slice(rank * linear.in_features // world, (rank + 1) * linear.in_features // world)
        self.weight = _shard_param(linear.weight[:, cols])
        self.bias = linear.bias  # replicated: every rank gets the same full gradient

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _ReduceFromParallel.apply(F.linear(x, self.weight), self.group)
        return y if self.bias is None else y + self.bias

    def unshard(self, shard: torch.Tensor) -> torch.Tensor:
        """As :meth:`ColumnParallelLinear.unshard`; the bias (and its gradient) is whole already."""
        return shard if shard.dim() == 1 else torch.cat(_all_gather(shard, self.group), dim=1)


def _local_config(config, world: int):
    """The shared config with this rank's share of heads and width, for the attention kernels."""
    local = copy.copy(config)
    local.n_head, local.n_embd = config.n_head // world, config.n_embd // world
    return local


class ParallelSelfAttention(SelfAttention):
    """Self-attention over this rank's heads; ``heads`` and the kernels come from SelfAttention."""

    def __init__(self, attn: SelfAttention, group=None):
        nn.Module.__init__(self)
        self.c_attn = ColumnParallelLinear(attn.c_attn, group, parts=3)  # q, k and v: this rank's heads of each
        self.c_proj = RowParallelLinear(attn.c_proj, group)
        self.resid_dropout, self.causal, self.rotary = attn.resid_dropout, attn.causal, attn.rotary
        self.config = _local_config(attn.config, dist.get_world_size(group))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.size()
        qkv = self.c_attn(x)
        q, k, v = map(self.heads, qkv.split(qkv.size(-1) // 3, dim=2))
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        y = attend(q, k, v, self.config, self.causal, self.config.dropout if self.training else 0.0)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, -1)))


class ParallelCrossAttention(CrossAttention):
    """Cross-attention over this rank's heads: ``c_q`` and ``c_kv`` column, ``c_proj`` row."""

    def __init__(self, attn: CrossAttention, group=None):
        nn.Module.__init__(self)
        self.c_q, self.c_kv = ColumnParallelLinear(attn.c_q, group), ColumnParallelLinear(attn.c_kv, group, parts=2)
        self.c_proj, self.resid_dropout = RowParallelLinear(attn.c_proj, group), attn.resid_dropout
        self.config = _local_config(attn.config, dist.get_world_size(group))

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.size()
        nh, hs = self.config.n_head, self.config.head_dim
        q = self.c_q(x).view(B, T, nh, hs).transpose(1, 2)
        k, v = (t.view(B, -1, nh, hs).transpose(1, 2) for t in self.c_kv(memory).chunk(2, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.config.dropout if self.training else 0.0)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, -1)))


def parallelize(model: nn.Module, group=None) -> nn.Module:
    """Shard every :class:`Block` of ``model`` (GPT, BERT, T5) across ``group`` in place; returns
    ``model``. Checked before anything changes: heads and MLP width must divide by the group size."""
    world = dist.get_world_size(group)
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no transformer blocks to shard")
    for block in blocks:
        n_head, hidden = block.attn.config.n_head, block.mlp.c_fc.out_features
        bad = [f"n_head ({n_head})"] * bool(n_head % world) + [f"the MLP width ({hidden})"] * bool(hidden % world)
        if bad:
            raise ValueError(f"tensor parallelism over {world} ranks needs {' and '.join(bad)} divisible by {world}")
    for block in blocks:
        block.attn = ParallelSelfAttention(block.attn, group)
        if hasattr(block, "cross_attn"):
            block.cross_attn = ParallelCrossAttention(block.cross_attn, group)
        block.mlp.c_fc = ColumnParallelLinear(block.mlp.c_fc, group)  # GELU is elementwise: it runs on the shard
        block.mlp.c_proj = RowParallelLinear(block.mlp.c_proj, group)
    return model


def gather_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded state dict, loadable by the unparallelized model (for export: save it on
    rank 0). A collective: every rank of the group calls it, and every rank gets the result."""
    return unshard_state_dict(model, model.state_dict())


def unshard_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` (this rank's shards under the model's names, e.g. the optimizer's fp32 master
    copies) with every shard replaced by the whole tensor. A collective, as :func:`gather_state_dict`."""
    state = dict(state)
    for name, module in model.named_modules():
        if isinstance(module, (ColumnParallelLinear, RowParallelLinear)):
            for key in ("weight", "bias"):
                if getattr(module, key) is not None:
                    state[f"{name}.{key}"] = module.unshard(state[f"{name}.{key}"].to(getattr(module, key).device))
    return state


class ModelParallelUnit:
    """The process groups, as DeepSpeed's ``mpu`` argument asks for them: ranks ``[0, tp)`` hold
    one copy of the model between them (a tensor-parallel group), ``[tp, 2 tp)`` the next, and the
    ranks that hold the same shard of every copy form a data-parallel group, over which ZeRO
    partitions and gradients are averaged. Every rank creates every group, in the same order."""

    def __init__(self, tensor_parallel: int):
        world, rank, tp = dist.get_world_size(), dist.get_rank(), tensor_parallel
        self.tp, self.world = tp, world
        for start in range(0, world, tp):
            group = dist.new_group(list(range(start, start + tp)))
            if start <= rank < start + tp:
                self.tp_group = group
        for offset in range(tp):
            group = dist.new_group(list(range(offset, world, tp)))
            if rank % tp == offset:
                self.dp_group = group

    def get_model_parallel_rank(self) -> int:
        return dist.get_rank(self.tp_group)

    def get_model_parallel_group(self):
        return self.tp_group

    def get_model_parallel_world_size(self) -> int:
        return self.tp

    get_tensor_model_parallel_rank = get_model_parallel_rank
    get_tensor_model_parallel_group = get_model_parallel_group
    get_tensor_model_parallel_world_size = get_model_parallel_world_size

    def get_data_parallel_rank(self) -> int:
        return dist.get_rank(self.dp_group)

    def get_data_parallel_group(self):
        return self.dp_group

    def get_data_parallel_world_size(self) -> int:
        return self.world // self.tp


@torch.no_grad()
def clip_grad_norm_(model: nn.Module, max_norm: float, group=None) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` for a parallelized model: the global norm counts each
    shard once and each replicated parameter once, so every rank scales by the same factor."""
    grads = [p for p in model.parameters() if p.grad is not None]
    squares = torch.zeros(2, device=grads[0].device if grads else None)  # sharded, replicated
    for p in grads:
        squares[0 if getattr(p, "tensor_model_parallel", False) else 1] += p.grad.float().pow(2).sum()
    sharded = squares[0].clone()
    dist.all_reduce(sharded, group=group)
    norm = (sharded + squares[1]).sqrt()
    for p in grads:
        p.grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0).to(p.grad.dtype))
    return norm
