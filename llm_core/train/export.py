"""The trained weights as a plain fp32 state dict, from whatever DeepSpeed holds them as."""

from __future__ import annotations

import hashlib

import torch


def fp32_state_dict(engine) -> dict[str, torch.Tensor]:
    """The model's state dict on CPU with every parameter taken from the fp32 master weights.

    With bf16/fp16 the module holds 16-bit copies rounded from the fp32 weights that the
    optimizer updates: exporting those would throw away the low bits of every weight.
    ``safe_get_full_fp32_param`` finds the fp32 copy under ZeRO 1-3 by gathering its
    partitions from all ranks, a collective: every rank calls this, in the same order. Under
    ZeRO 0 it returns None: see :func:`zero0_fp32_copies`. Buffers are kept from the module's
    ``state_dict()`` (ZeRO-3 partitions parameters only, whose entries there are placeholders);
    floating-point ones are saved as fp32 too.
    """
    from deepspeed.utils import safe_get_full_fp32_param

    zero0 = zero0_fp32_copies(engine.optimizer)
    state = {name: t.detach().cpu() for name, t in engine.module.state_dict().items()}
    masters: dict[int, torch.Tensor] = {}  # tied weights (wte, lm_head) are one parameter: fetch it once
    for name, param in engine.module.named_parameters(remove_duplicate=False):
        if id(param) not in masters:
            master = safe_get_full_fp32_param(param)
            if master is None:
                master = zero0.get(id(param), param)
            if master.dtype != torch.float32:
                raise RuntimeError(f"no fp32 master copy of {name} ({master.dtype}) found to export")
            masters[id(param)] = master.detach().cpu()
        state[name] = masters[id(param)]
    return {name: t.float() if t.is_floating_point() else t for name, t in state.items()}


def zero0_fp32_copies(optimizer) -> dict[int, torch.Tensor]:
    """``id(parameter) -> fp32 copy`` under ZeRO 0 with bf16/fp16, else empty.

    There DeepSpeed wraps our torch optimizer in ``FP16_UnfusedOptimizer``, whose ``fp32_groups``
    mirror the 16-bit ``fp16_groups``; ZeRO 0 in fp32 has no copy (the parameters are the
    master weights)."""
    from deepspeed.runtime.fp16.unfused_optimizer import FP16_UnfusedOptimizer

    if not isinstance(optimizer, FP16_UnfusedOptimizer):
        return {}
    return {id(low): high for lows, highs in zip(optimizer.fp16_groups, optimizer.fp32_groups)
            for low, high in zip(lows, highs)}


def global_grad_norm(model: torch.nn.Module, tensor_parallel_group=None) -> float:
    """The L2 norm of all the model's gradients (what DeepSpeed reports under ZeRO 1-3 and
    mixed precision, and does not under ZeRO 0 with a torch optimizer in fp32). With a
    tensor-parallel group, the shards' squares are summed over it (replicated weights once)."""
    import torch.distributed as dist

    device = next(model.parameters()).device  # NCCL reduces GPU tensors only
    squares = torch.zeros(2, dtype=torch.float64, device=device)  # sharded, replicated
    for p in model.parameters():
        if p.grad is not None:
            squares[0 if getattr(p, "tensor_model_parallel", False) else 1] += p.grad.detach().double().pow(2).sum()
    if tensor_parallel_group is not None:
        dist.all_reduce(squares[:1], group=tensor_parallel_group)  # a view: reduced in place
    return float(squares.sum().sqrt())


def replica_digest(engine) -> str | None:
    """SHA-256 of this rank's working copy of the parameters (ZeRO 0-2 keep a full copy on
    every rank, which data parallelism must keep identical); None under ZeRO-3, where each
    rank holds only its partition."""
    if engine.zero_optimization_stage() >= 3:
        return None
    digest = hashlib.sha256()
    for name, param in sorted(engine.module.named_parameters(), key=lambda item: item[0]):
        digest.update(name.encode())
        digest.update(param.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()
