"""Tensor parallelism (llm_core/models/tensor_parallel.py) against the unsharded model.

Two CPU processes (gloo on 127.0.0.1) each build the same seeded model, keep an unsharded copy
as the reference and shard the other; every family then runs one forward/backward and three
AdamW steps on the same batches in both. The processes are started once for the module (a
spawn costs seconds) and report their measured differences, which the tests check.
"""

from __future__ import annotations

import copy
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from llm_core.models import TransformerConfig, build_model
from llm_core.models.block import Block
from llm_core.models.tensor_parallel import (ColumnParallelLinear, ParallelSelfAttention, RowParallelLinear,
                                             clip_grad_norm_, gather_state_dict, parallelize)

WORLD = 2
BASE = dict(vocab_size=256, n_layer=2, n_embd=64, n_head=4, block_size=32, dropout=0.0)
SCENARIOS = {
    "gpt": dict(family="gpt"),
    "gpt_rotary_bias": dict(family="gpt", position="rotary", bias=True),
    "gpt_sliding": dict(family="gpt", attention="sliding", window=12, global_tokens=2),
    "bert": dict(family="bert", bias=True),
    "t5": dict(family="t5", position="rotary"),
}


def _batch(config: TransformerConfig, step: int) -> tuple:
    """The model's inputs for one step, the same on every rank."""
    g = torch.Generator().manual_seed(step)
    B, T, V = 4, config.block_size, config.vocab_size
    idx = torch.randint(0, V, (B, T), generator=g)
    if config.family == "gpt":
        return idx, torch.randint(0, V, (B, T), generator=g)
    if config.family == "bert":
        targets = torch.where(torch.rand(B, T, generator=g) < 0.15, idx, torch.full_like(idx, -100))
        segments = (torch.arange(T) >= T // 2).long().expand(B, T)
        return idx, segments, targets, torch.randint(0, 2, (B,), generator=g)
    return idx, torch.randint(0, V, (B, T // 2), generator=g), torch.randint(0, V, (B, T // 2), generator=g)


def _gathered_grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    grads = {name: p.grad for name, p in model.named_parameters()}
    for name, module in model.named_modules():
        if isinstance(module, (ColumnParallelLinear, RowParallelLinear)):
            for key in ("weight", "bias"):
                if getattr(module, key) is not None:
                    grads[f"{name}.{key}"] = module.unshard(getattr(module, key).grad)
    return grads


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def _compare(settings: dict) -> dict[str, float]:
    """Differences between the sharded model and the reference on this rank."""
    torch.manual_seed(0)
    config = TransformerConfig(**BASE, **settings)
    ref = build_model(config)
    initial = {k: v.clone() for k, v in ref.state_dict().items()}
    tp = parallelize(copy.deepcopy(ref))
    out = {"sharded_blocks": float(all(isinstance(b.attn, ParallelSelfAttention) for b in tp.modules()
                                       if isinstance(b, Block)))}
    exported = build_model(config)
    exported.load_state_dict(gather_state_dict(tp))
    out["export"] = _max_diff(exported.state_dict(), initial)
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1) for m in (ref, tp)]
    for step in range(4):  # steps 1..3 follow 1..3 AdamW updates
        batch = _batch(config, step)
        (logits_ref, loss_ref), (logits_tp, loss_tp) = ref(*batch), tp(*batch)
        out[f"loss_step{step}"] = abs(loss_ref.item() - loss_tp.item())
        if step == 3:
            break
        for opt in opts:
            opt.zero_grad()
        loss_ref.backward()
        loss_tp.backward()
        if step == 0:
            out["logits"] = (logits_ref - logits_tp).abs().max().item()
            out["grads"] = _max_diff(_gathered_grads(tp), {n: p.grad for n, p in ref.named_parameters()})
        norm_ref = torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        out[f"grad_norm_step{step}"] = abs(norm_ref.item() - clip_grad_norm_(tp, 0.5).item())
        for opt in opts:
            opt.step()
    return out


def _worker(rank: int, port: int, results: dict) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        start = time.perf_counter()
        measured = {name: _compare(settings) for name, settings in SCENARIOS.items()}
        odd = build_model(TransformerConfig(**{**BASE, "n_embd": 48, "n_head": 3}))
        try:
            parallelize(odd)
            measured["divisibility_error"] = "no error"
        except ValueError as exc:
            unchanged = all(type(b.attn).__name__ == "SelfAttention" for b in odd.transformer.h)
            measured["divisibility_error"] = f"{exc} | unchanged={unchanged}"
        measured["seconds"] = time.perf_counter() - start
        results[rank] = measured
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def measured() -> dict:
    """Both ranks' measurements, merged to the larger difference of the two."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(port, results), nprocs=WORLD, join=True)
        ranks = [results[r] for r in range(WORLD)]
    merged = {name: {k: max(r[name][k] for r in ranks) for k in ranks[0][name]} for name in SCENARIOS}
    merged["divisibility_error"] = [r["divisibility_error"] for r in ranks]
    print({k: v for k, v in merged.items()}, "seconds per rank:", [round(r["seconds"], 2) for r in ranks])
    return merged


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_matches_unsharded_model(measured, scenario):
    m = measured[scenario]
    assert m["sharded_blocks"] == 1.0
    assert m["export"] == 0.0  # reassembled weights are the originals, bit for bit
    assert m["logits"] < 1e-5 and m["loss_step0"] < 1e-5
    assert m["grads"] < 1e-5
    assert m["grad_norm_step0"] < 1e-5
    assert max(m[f"loss_step{s}"] for s in (1, 2, 3)) < 1e-4


def test_divisibility_error(measured):
    for message in measured["divisibility_error"]:
        assert "n_head (3)" in message and "divisible by 2" in message, message
        assert message.endswith("unchanged=True"), message
