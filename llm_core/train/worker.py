"""One training process (``torchrun`` starts ``nproc_per_node`` of them).

The loop reads like nanoGPT's train.py: sample a batch from the memory-mapped shards,
forward, backward, step, log; DeepSpeed does accumulation, clipping, ZeRO partitioning and
the LR schedule. Rank 0 writes the metrics, the DeepSpeed checkpoint is written by all
ranks, and rank 0 saves a plain fp32 ``model.pt`` (the optimizer's fp32 master weights)
for evaluation and the registry.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.distributed.elastic.multiprocessing.errors import record

from llm_core.train.config import TrainConfig
from llm_core.models import GPT, GPTConfig
from llm_core.tokenizer.shards import TokenShards
from llm_core.train.ds_config import deepspeed_config

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_TAG = "final"
MODEL_FILE = "model.pt"
TRAIN_STATS_FILE = "train_stats.json"
METRICS_FILE = "metrics.jsonl"


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

    There DeepSpeed wraps our torch AdamW in ``FP16_UnfusedOptimizer``, whose ``fp32_groups``
    mirror the 16-bit ``fp16_groups``; ZeRO 0 in fp32 has no copy (the parameters are the
    master weights)."""
    from deepspeed.runtime.fp16.unfused_optimizer import FP16_UnfusedOptimizer

    if not isinstance(optimizer, FP16_UnfusedOptimizer):
        return {}
    return {id(low): high for lows, highs in zip(optimizer.fp16_groups, optimizer.fp32_groups)
            for low, high in zip(lows, highs)}


@record  # torchrun then prints the worker's traceback in its failure report (llm_core.train.launch reads it)
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("job", type=Path, help="job.json written by llm_core.train.launch")
    job = json.loads(parser.parse_args().job.read_text())
    config = TrainConfig.model_validate(job["config"])
    shards_dir, out_dir = Path(job["shards_dir"]), Path(job["out_dir"])

    import deepspeed  # imported late: its import is slow and prints accelerator detection

    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()

    torch.manual_seed(config.seed)
    train_data = TokenShards(shards_dir, "train")
    m = config.model
    model = GPT(GPTConfig(vocab_size=train_data.vocab_size, block_size=m.block_size, n_layer=m.n_layer,
                          n_head=m.n_head, n_embd=m.n_embd, dropout=m.dropout, bias=m.bias))
    params = model.num_params()  # counted now: ZeRO-3 frees each rank's full parameters at initialize
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=model.param_groups(config.weight_decay), config=deepspeed_config(config, cuda)
    )
    device = engine.device
    rng = np.random.default_rng(config.seed + rank)  # each rank draws its own batches

    metrics = (out_dir / METRICS_FILE).open("w") if rank == 0 else None
    tokens_per_step = config.micro_batch_size * config.grad_accum_steps * m.block_size * world
    started = time.perf_counter()
    window_losses: list[float] = []
    for step in range(1, config.max_steps + 1):
        for _ in range(config.grad_accum_steps):
            batch = torch.from_numpy(train_data.sample_windows(rng, config.micro_batch_size, m.block_size + 1))
            x, y = batch[:, :-1].to(device), batch[:, 1:].to(device)
            _, loss = engine(x, y)
            engine.backward(loss)
            engine.step()
            window_losses.append(loss.item())
        if rank == 0 and (step % config.log_every == 0 or step == config.max_steps):
            elapsed = time.perf_counter() - started
            record = {
                "step": step,
                "loss": float(np.mean(window_losses)),
                "lr": engine.get_lr()[0],
                "grad_norm": float(engine.get_global_grad_norm() or 0.0),
                "tokens_per_s": step * tokens_per_step / elapsed,
                "elapsed_s": elapsed,
            }
            metrics.write(json.dumps(record) + "\n")
            metrics.flush()
            print(f"step {step}/{config.max_steps} loss {record['loss']:.4f} lr {record['lr']:.2e}", flush=True)
            window_losses = []
    train_s = time.perf_counter() - started

    engine.save_checkpoint(str(out_dir / CHECKPOINT_DIR), tag=CHECKPOINT_TAG)
    state = fp32_state_dict(engine)  # a collective under ZeRO: every rank takes part
    torch.distributed.barrier()
    if rank == 0:
        metrics.close()
        torch.save({"config": model.config.to_dict(), "state_dict": state}, out_dir / MODEL_FILE)
        last = json.loads((out_dir / METRICS_FILE).read_text().splitlines()[-1])
        (out_dir / TRAIN_STATS_FILE).write_text(json.dumps({
            "steps": config.max_steps,
            "world_size": world,
            "params": params,
            "tokens_seen": config.max_steps * tokens_per_step,
            "final_loss": last["loss"],
            "train_s": round(train_s, 3),
            "tokens_per_s": round(config.max_steps * tokens_per_step / train_s, 1),
            "device": str(device),
        }))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
