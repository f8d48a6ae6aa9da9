"""What a run does about a non-finite loss or gradient: stop, or roll back to its last
checkpoint with a lower learning rate (``train.on_nonfinite``). Every rank calls these with
the same arguments: the decision comes from all-reduced values (:mod:`llm_core.train.guards`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llm_core.train.checkpoints import step_of
from llm_core.train.guards import TrainingStopped

if TYPE_CHECKING:
    from llm_core.train.worker import Trainer


def close_step(trainer: "Trainer", done: int) -> None:
    """Run the rest of a step's micro-batches with zero-weighted losses, so that DeepSpeed's
    accumulation counters and gradient buffers end the step as usual before a rollback
    reloads the checkpoint (the update this step applies is thrown away with it)."""
    if trainer.config.on_nonfinite != "rollback" or not done:
        return
    for _ in range(trainer.accumulation - done):
        trainer.engine.backward(trainer.micro_batch_loss() * 0.0)
        trainer.engine.step()


def handle_nonfinite(trainer: "Trainer", what: str, step: int) -> None:
    """Stop with a clear message, or roll back to the last checkpoint with a lower rate.

    A non-finite gradient under ``skip`` rolls back too: ZeRO 0 in fp32 has already
    applied its update (ZeRO 1-3 and bf16 skip it themselves; rolling back is right either way)."""
    config, state = trainer.config, trainer.state
    latest = trainer.checkpoints.latest()
    where = f"the last good checkpoint is {latest} (step {step_of(latest)})" if latest else \
        "no checkpoint was written yet"
    rollback = config.on_nonfinite == "rollback" or (config.on_nonfinite == "skip" and what != "loss")
    if not rollback or latest is None or state.rollbacks >= config.max_rollbacks:
        why = {"stop": "",
               "skip": " (a non-finite gradient cannot be skipped: its update is applied)" if what != "loss"
               else f" ({10 * trainer.accumulation} batches in a row)",
               "rollback": f" after {state.rollbacks} rollbacks" if latest else " and nothing to roll back to"}
        raise TrainingStopped(f"non-finite {what} at step {step}{why[config.on_nonfinite]}; {where}")
    # What happened since the checkpoint stays counted (the best validation too: best/ may
    # be newer than the checkpoint); the data sampler keeps its position, so the batches
    # that led to the fault are not drawn again.
    kept = {name: getattr(state, name) for name in ("skipped_batches", "train_s", "best_val_loss", "best_step",
                                                     "evals_since_best", "resumed_from")}
    kept.update(rollbacks=state.rollbacks + 1, lr_scale=state.lr_scale * config.rollback_lr_factor)
    vars(state).update({**trainer.checkpoints.load(trainer.engine, latest, rng=None), **kept})  # in place: the loop holds it
    scheduler = trainer.engine.lr_scheduler
    scheduler.base_lrs = [config.lr * state.lr_scale for _ in scheduler.base_lrs]
    scheduler.last_epoch -= 1
    scheduler.step()  # the current rate again, from the lowered base
    trainer.say(f"step {step}: non-finite {what}; rolled back to step {state.step}, "
              f"learning rate × {state.lr_scale:g}")
    return None
