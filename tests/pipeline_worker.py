"""A tiny GPT trained as DeepSpeed pipeline stages, or as one plain process, on the same batches.

Both modes start from the same weights (a seeded :class:`GPT`, copied into the stages) and use
the same AdamW, clipping and micro-batches, so their per-step losses should agree to float
rounding; ``tests/test_pipeline_parallel.py`` checks that, and a benchmark can compare their
speed. Rank 0 (or the one process) prints one JSON line: ``{"mode", "losses" (one a step),
"eval_loss" (a held-out batch), "tokens_per_s" (steps after the first)}``::

    DS_ACCELERATOR=cpu OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 tests/pipeline_worker.py   # 2 stages
    OMP_NUM_THREADS=1 python tests/pipeline_worker.py --single                                  # 1 process

Arguments: ``--steps`` (5), ``--micro-batches`` (4: gradient accumulation), ``--micro-batch-size``
(4), ``--n-layer`` (2), ``--n-embd`` (64), ``--n-head`` (4), ``--block-size`` (32), ``--lr``
(1e-3), ``--zero-stage`` (0; 1 works too, 2 and 3 DeepSpeed refuses), ``--seed`` (0),
``--text FILE`` (its bytes are the tokens, vocab 256; random tokens without it), ``--untied``,
``--rotary``, ``--export FILE`` (the trained GPT as a ``model.pt``, gathered from the stages).
As many stages as processes (no data parallelism here).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.distributed as dist

from llm_core.models.block import param_groups
from llm_core.models.config import TransformerConfig
from llm_core.models.gpt import GPT
from llm_core.train.pipeline_parallel import gather_gpt_state_dict, gpt_pipeline, load_gpt_state_dict


def batches(args, count: int, seed: int) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """``count`` steps of ``micro_batches`` (inputs, next-token targets) pairs from fixed offsets."""
    g = torch.Generator().manual_seed(seed)
    data = (torch.frombuffer(bytearray(Path(args.text).read_bytes()), dtype=torch.uint8).long() if args.text
            else torch.randint(256, (100_000,), generator=g))
    steps = []
    for _ in range(count):
        shape = (args.micro_batches, args.micro_batch_size)
        starts = torch.randint(len(data) - args.block_size - 1, shape, generator=g)
        rows = [torch.stack([data[s:s + args.block_size + 1] for s in mb]) for mb in starts]
        steps.append([(r[:, :-1].contiguous(), r[:, 1:].contiguous()) for r in rows])
    return steps


def model_config(args) -> TransformerConfig:
    return TransformerConfig(vocab_size=256, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                             block_size=args.block_size, dropout=0.0, tie_weights=not args.untied,
                             position="rotary" if args.rotary else "learned")


def run(args) -> dict:
    """Train ``args.steps`` steps; the per-step losses, the eval loss and tokens/s (steps after the first)."""
    config, train = model_config(args), batches(args, args.steps, args.seed)
    (held_out,) = batches(args, 1, args.seed + 1)
    torch.manual_seed(args.seed)
    gpt = GPT(config)  # the same initial weights in both modes
    adamw = dict(lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    if args.single:
        optimizer = torch.optim.AdamW(param_groups(gpt, 0.1), **adamw)

        def step(micro):
            optimizer.zero_grad()
            losses = [gpt(x, y)[1] for x, y in micro]
            sum(losses).div(len(micro)).backward()  # the mean over micro-batches, as DeepSpeed scales
            torch.nn.utils.clip_grad_norm_(gpt.parameters(), 1.0)
            optimizer.step()
            return sum(loss.item() for loss in losses) / len(micro)
    else:
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo")
        module = gpt_pipeline(config, dist.get_world_size())
        load_gpt_state_dict(module, gpt.state_dict())
        ds = {"train_micro_batch_size_per_gpu": args.micro_batch_size,
              "gradient_accumulation_steps": args.micro_batches,  # the pipeline's micro-batches
              "train_batch_size": args.micro_batch_size * args.micro_batches, "gradient_clipping": 1.0,
              "zero_optimization": {"stage": args.zero_stage}, "steps_per_print": 10**9,
              "optimizer": {"type": "AdamW", "params": {**adamw, "weight_decay": 0.1, "torch_adam": True}}}
        engine, *_ = deepspeed.initialize(model=module, model_parameters=param_groups(module, 0.1), config=ds)

        def step(micro):
            return engine.train_batch(iter(micro)).item()
    losses, times = [], []
    for micro in train:
        start = time.perf_counter()
        losses.append(step(micro))
        times.append(time.perf_counter() - start)
    if args.single:
        with torch.no_grad():
            eval_loss, state = sum(gpt(x, y)[1].item() for x, y in held_out) / len(held_out), gpt.state_dict()
    else:
        eval_loss, state = engine.eval_batch(iter(held_out)).item(), gather_gpt_state_dict(engine)
    tokens = args.micro_batches * args.micro_batch_size * args.block_size * (len(times) - 1)
    result = {"mode": "single" if args.single else "pipeline", "losses": losses, "eval_loss": eval_loss,
              "tokens_per_s": tokens / sum(times[1:]) if tokens else None}
    if args.export and state is not None:
        torch.save({"config": config.to_dict(), "state_dict": state}, args.export)
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, default in (("steps", 5), ("micro-batches", 4), ("micro-batch-size", 4), ("n-layer", 2), ("n-embd", 64),
                          ("n-head", 4), ("block-size", 32), ("zero-stage", 0), ("seed", 0)):
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--text", help="a text file whose bytes are the tokens (random tokens without it)")
    p.add_argument("--export", help="write the trained GPT here as a model.pt")
    p.add_argument("--untied", action="store_true", help="an output projection of its own (tie_weights: false)")
    p.add_argument("--rotary", action="store_true", help="rotary positions instead of learned ones")
    p.add_argument("--single", action="store_true", help="one process, no DeepSpeed: the reference")
    return p


if __name__ == "__main__":
    result = run(parser().parse_args())
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(json.dumps(result), flush=True)
    if dist.is_initialized():
        dist.destroy_process_group()
