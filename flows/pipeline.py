"""The ``pipeline`` flow: crawl → dedupe → filter → tokenizer → train → evaluate.

Each stage is a cached Prefect task passing small ``StageOutput`` records (paths, keys,
stats), never data. The flow owns one MLflow parent run; each stage gets a child run, and
the evaluated model is registered.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow, get_run_logger
from prefect.context import get_run_context

from llm_core import tracking
from llm_core.config import STAGES, PipelineConfig, StageName
from llm_core.evaluate import REPORT_JSON, REPORT_MD
from llm_core.stages import get_stage
from llm_core.storage import StageOutput
from llm_core.tokenizer import TOKENIZER_FILE
from llm_core.train import MODEL_FILE
from tasks import STAGE_TASKS
from tasks.common import run_stage_task

# Files worth seeing in MLflow next to each stage's stats.json.
STAGE_ARTIFACTS = {"tokenizer": [TOKENIZER_FILE], "train": ["train_stats.json"], "evaluate": [REPORT_MD, REPORT_JSON]}


@flow(name="pipeline", log_prints=True)
def pipeline(config: PipelineConfig = PipelineConfig(), stop_after: StageName = "evaluate") -> dict[str, Any]:
    """Run the stages up to and including ``stop_after``; finished stages are cached."""
    logger = get_run_logger()
    # Stage progress (pages crawled, training steps) is logged by llm_core; Prefect forwards
    # that logger (PREFECT_LOGGING_EXTRA_LOGGERS) but leaves its level at the root's WARNING.
    logging.getLogger("llm_core").setLevel(logging.INFO)
    flow_run = get_run_context().flow_run
    outputs: dict[str, StageOutput] = {}
    status: dict[str, str] = {}
    summary: dict[str, Any] = {"flow_run_id": str(flow_run.id), "flow_run_name": flow_run.name}

    with tracking.pipeline_run(config, run_name=flow_run.name, tags={"prefect.flow_run_id": str(flow_run.id)}) as run_id:
        summary["mlflow_run_id"] = run_id
        summary["mlflow_tracking_uri"] = tracking.tracking_uri(config.project)
        for stage_task in STAGE_TASKS[: STAGES.index(stop_after) + 1]:
            stage = get_stage(stage_task.name)
            inputs = {name: outputs[name] for name in stage.inputs}
            output, status[stage.name] = run_stage_task(stage_task, config, inputs)
            outputs[stage.name] = output
            logger.info("%s: %s %s", stage.name, status[stage.name], output.path)
            tracking.log_stage(run_id, output, stage.config(config), status[stage.name],
                               [output.file(f) for f in STAGE_ARTIFACTS.get(stage.name, [])])

        if "evaluate" in outputs:
            version, new = tracking.register_model(
                config.project.registered_model_name, outputs["train"].key,
                outputs["train"].file(MODEL_FILE), outputs["tokenizer"].file(TOKENIZER_FILE),
                metrics={k: outputs["evaluate"].stats[k] for k in ("val_loss", "perplexity", "bits_per_byte")},
            )
            summary["registered_model"] = {"name": config.project.registered_model_name, "version": version, "new": new}
            summary["report"] = str(outputs["evaluate"].file(REPORT_MD))

    summary["stages"] = {
        name: {"path": str(out.path), "status": status[name], "wall_s": out.stats.get("wall_s")}
        for name, out in outputs.items()
    }
    return summary
