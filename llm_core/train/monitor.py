"""Where a training run's figures go while it runs (rank 0 only).

Each record (a logged step, a validation) goes to ``metrics.jsonl`` (the history the stage
keeps), to TensorBoard event files, to MLflow live when the orchestrator named a run for it
(``$LLMPIPE_MLFLOW_RUN_ID``, set by the flow around the stage; MLflow's own ``MLFLOW_RUN_ID``
is not used: it would make every ``mlflow.start_run`` in the orchestrator resume that run),
and as a progress line on stdout, which the launcher forwards to the Prefect logs.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

LIVE_RUN_ENV = "LLMPIPE_MLFLOW_RUN_ID"
METRICS_FILE = "metrics.jsonl"
METRIC_PREFIX = "train/"
MLFLOW_BATCH = 1000  # metrics per log_batch call, MLflow's limit
log = logging.getLogger(__name__)


class Monitor:
    """``resume_after_step``: the step of the checkpoint a resumed run continues from (None:
    a fresh run). The records up to it are kept, the later ones (trained again) dropped;
    TensorBoard drops its later events (``purge_step``) and a live MLflow run gets the kept
    records again, so that a run resumed under a new orchestrator run has its whole curve."""

    def __init__(self, metrics_file: Path, tensorboard_dir: Path | None, resume_after_step: int | None):
        self.metrics_file = Path(metrics_file)
        kept = self._keep_history(resume_after_step)
        self._file = self.metrics_file.open("a")
        self._tensorboard = None
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_after_step + 1 if resume_after_step is not None else None
            self._tensorboard = SummaryWriter(str(tensorboard_dir), purge_step=purge)
        self._mlflow = None
        self._run_id = os.environ.get(LIVE_RUN_ENV)
        if self._run_id:
            from mlflow.tracking import MlflowClient

            self._mlflow = MlflowClient()
            self._log_live(kept)

    def _keep_history(self, resume_after_step: int | None) -> list[dict[str, Any]]:
        """On resume, drop the records a killed run wrote after the checkpoint it resumes from:
        those steps are trained again. Returns the records kept."""
        if resume_after_step is None or not self.metrics_file.exists():
            self.metrics_file.write_text("")
            return []
        kept = [json.loads(line) for line in self.metrics_file.read_text().splitlines() if line]
        kept = [r for r in kept if r["step"] <= resume_after_step]
        self.metrics_file.write_text("".join(json.dumps(r) + "\n" for r in kept))
        return kept

    def record(self, step: int, figures: dict[str, float]) -> None:
        self._file.write(json.dumps({"step": step, **figures}) + "\n")
        self._file.flush()
        if self._tensorboard is not None:
            for name, value in figures.items():
                self._tensorboard.add_scalar(f"{METRIC_PREFIX}{name}", value, step)
            self._tensorboard.flush()
        if self._mlflow is not None:
            self._log_live([{"step": step, **figures}])

    def _log_live(self, records: list[dict[str, Any]]) -> None:
        """The records' figures in batches of MLflow's limit (1,000 metrics); a tracking server
        that fails does not stop training (the history file is logged when the stage ends)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(f"{METRIC_PREFIX}{k}", float(v), now, r["step"]) for r in records
                   for k, v in r.items() if k != "step"]
        try:
            for start in range(0, len(metrics), MLFLOW_BATCH):
                self._mlflow.log_batch(self._run_id, metrics=metrics[start : start + MLFLOW_BATCH])
        except Exception as exc:  # noqa: BLE001 (monitoring must not kill a training run)
            log.warning("live MLflow logging stopped: %s", exc)
            self._mlflow = None

    @property
    def logged_live(self) -> bool:
        return self._mlflow is not None

    def close(self) -> None:
        self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def progress_line(step: int, max_steps: int, figures: dict[str, Any]) -> str:
    """``step 40/200 loss 3.1416 val_loss 3.2000 lr 1.00e-03 5120 tok/s``: what is there of it."""
    formats = {"loss": "loss {:.4f}", "val_loss": "val_loss {:.4f}", "lr": "lr {:.2e}",
               "tokens_per_s": "{:.0f} tok/s", "mfu": "mfu {:.1%}", "loss_scale": "loss_scale {:g}"}
    return " ".join([f"step {step}/{max_steps}"] + [f.format(figures[k]) for k, f in formats.items() if k in figures])
