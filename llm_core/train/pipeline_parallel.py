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

Run as a script it trains a tiny GPT on fixed batches and prints one JSON line (per-step
losses, eval loss, tokens/s) -- the test and a benchmark compare the two modes::

    torchrun --nproc_per_node 2 -m llm_core.train.pipeline_parallel   # 2 stages (DS_ACCELERATOR=cpu)
    python -m llm_core.train.pipeline_parallel --single               # the same GPT, one process

Arguments: ``--steps --micro-batches --micro-batch-size --n-layer --n-embd --n-head
--block-size --lr --zero-stage --seed``, ``--text FILE`` (its bytes are the tokens, vocab 256;
random tokens without it), ``--export FILE`` (the trained GPT as a ``model.pt``).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn import functional as F
from deepspeed.pipe import LayerSpec, PipelineModule, TiedLayerSpec

from llm_core.models.block import Block, cross_entropy, init_weights, param_groups, position_table
from llm_core.models.config import TransformerConfig
from llm_core.models.gpt import GPT

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
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln_f(x)


class Head(nn.Module):
    """The untied output projection (``tie_weights: false``)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(x)


def gpt_pipeline(config: TransformerConfig, num_stages: int, loss_fn=cross_entropy,
                 partition_method: str = "type:Block") -> PipelineModule:
    """The GPT as ``num_stages`` pipeline stages (needs ``torch.distributed`` initialised).

    ``type:Block`` balances the blocks, so every stage gets ``n_layer / num_stages`` of them
    (stage 0 adds the embeddings, the last stage the norm and head, which cost little).
    Weights are initialised as :class:`GPT` does; the tied embedding is re-broadcast from the
    first stage afterwards, so both copies start equal."""
    if num_stages < 1 or num_stages > config.n_layer or config.n_layer % num_stages:
        raise ValueError(f"train.pipeline_stages ({num_stages}) must divide train.model.n_layer "
                         f"({config.n_layer}) so that every stage holds the same number of blocks")
    if config.tie_weights:
        first = TiedLayerSpec("embed", Tokens, config, tied_weight_attr=["wte.weight"])
        last = TiedLayerSpec("embed", Tokens, config, forward_fn=tied_head, tied_weight_attr=["wte.weight"])
    else:
        first, last = LayerSpec(Tokens, config), LayerSpec(Head, config)
    layers = [first, LayerSpec(Positions, config), *[LayerSpec(Block, config, True) for _ in range(config.n_layer)],
              LayerSpec(Final, config), last]
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


# --- the script: a tiny GPT, pipelined or in one process, on the same batches -------------------

def batches(args, count: int, seed: int) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """``count`` steps of ``micro_batches`` (inputs, next-token targets) pairs from fixed offsets."""
    g = torch.Generator().manual_seed(seed)
    data = (torch.frombuffer(bytearray(open(args.text, "rb").read()), dtype=torch.uint8).long() if args.text
            else torch.randint(256, (100_000,), generator=g))
    steps = []
    for _ in range(count):
        starts = torch.randint(len(data) - args.block_size - 1, (args.micro_batches, args.micro_batch_size), generator=g)
        rows = [torch.stack([data[s:s + args.block_size + 1] for s in mb]) for mb in starts]
        steps.append([(r[:, :-1].contiguous(), r[:, 1:].contiguous()) for r in rows])
    return steps


def model_config(args) -> TransformerConfig:
    return TransformerConfig(vocab_size=256, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                             block_size=args.block_size, dropout=0.0, tie_weights=not args.untied,
                             position="rotary" if args.rotary else "learned")


def run(args) -> dict:
    """Train ``args.steps`` steps; the per-step losses, the eval loss and tokens/s (steps after the first)."""
    config, train, (held_out,) = model_config(args), batches(args, args.steps, args.seed), batches(args, 1, args.seed + 1)
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
        ds = {"train_micro_batch_size_per_gpu": args.micro_batch_size, "gradient_accumulation_steps": args.micro_batches,
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
