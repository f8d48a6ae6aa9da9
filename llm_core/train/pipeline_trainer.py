"""The train stage's loop with the GPT split into pipeline stages (``train.pipeline_stages``).

Everything but the step is :class:`~llm_core.train.worker.Trainer`'s: checkpoints, resume,
rollback, validation, early stopping, metrics. What changes: the model is
:func:`~llm_core.train.pipeline_parallel.gpt_pipeline` (started from the same weights the
plain model would have: the seed, or ``init_from``); DeepSpeed's ``PipelineEngine`` runs a
step's micro-batches through the stages itself (``train_batch``, the 1F1B schedule), so a step
is one call; validation is ``eval_batch``; the exported ``model.pt`` is gathered from the
stages under the GPT's names, so evaluation and the registry see an ordinary GPT.

A step's loss is known only after its update (the last stage computes it while the first is
already in the backward pass): a non-finite loss stops the run or rolls it back (``skip`` is
refused with the config), and the validation accuracy is not measured (the logits stay on the
last stage).
"""

from __future__ import annotations

import torch

from llm_core.train.guards import all_finite
from llm_core.train.pipeline_parallel import gather_gpt_state_dict, gpt_pipeline, load_gpt_state_dict
from llm_core.train.recovery import handle_nonfinite
from llm_core.train.worker import Trainer


class PipelineTrainer(Trainer):
    def parallel_model(self, model: torch.nn.Module) -> torch.nn.Module:
        self.mpu = None  # the PipelineModule builds its own process topology
        module = gpt_pipeline(model.config, self.config.pipeline_stages)
        load_gpt_state_dict(module, model.state_dict())
        return module

    def data_rank(self) -> int:
        return self.engine.grid.get_data_parallel_id()  # the stages of one pipeline draw the same batches

    def export_weights(self) -> dict[str, torch.Tensor] | None:
        weights = gather_gpt_state_dict(self.engine)  # on rank 0; ZeRO 0/1 keep whole parameters
        return None if weights is None else {name: t.float() for name, t in weights.items()}

    def micro_batches(self, count: int, data, rng) -> list[tuple[torch.Tensor, torch.Tensor]]:
        batches = [self.to_device(self.objective.batch(data, rng, self.config.micro_batch_size)) for _ in range(count)]
        return [(b["idx"], b["targets"]) for b in batches]

    def _one_step(self, step: int) -> list[float] | None:
        loss = self.engine.train_batch(iter(self.micro_batches(self.accumulation, self.train_data, self.rng)))
        if self.fault is not None and self.fault[:2] == ("nan_loss", step):
            loss, self.fault = loss * float("nan"), None
        if not all_finite(loss.detach(), self.device):
            return handle_nonfinite(self, "loss", step)
        self.last_grad_norm = self.engine.get_global_grad_norm()
        return [loss.item()]

    def _validation_windows(self) -> list:
        windows = super()._validation_windows()
        return [(b["idx"], b["targets"]) for b in windows]

    def _validate(self) -> tuple[float, None]:
        loss = self.engine.eval_batch(iter(self.val_windows), num_micro_batches=len(self.val_windows))
        return loss.item(), None  # averaged over the copies of the model, known on every stage
