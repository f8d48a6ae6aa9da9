"""The ``pipeline`` flow: crawl → dedupe → filter → tokenizer → train → evaluate.

Each stage is a cached Prefect task passing small ``StageOutput`` records (paths, keys,
stats), never data. The flow sets up everything it depends on itself (the run's config
fixed once, results under the data root, library logs forwarded), so a run started by a
Prefect worker from a deployment behaves exactly as one started by ``llmpipe run``. It
owns one MLflow parent run; each stage gets a child run, and the evaluated model is
registered.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import mlflow
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.context import get_run_context

from llm_core import registry, runs, tracking
from llm_core.config import STAGES, PipelineConfig, StageName
from llm_core.errors import PipelineError
from llm_core.evaluate import REPORT_MD
from llm_core.evaluate.report import LOSS_CURVES_PNG, render_html
from llm_core.preflight import check_services
from llm_core.stages import get_stage, plan
from llm_core.storage import StageOutput, output_dir
from llm_core.tokenizer import TOKENIZER_FILE
from llm_core.train import MODEL_FILE
from tasks import STAGE_TASKS
from tasks.common import run_stage_task

LIBRARY_LOGGER = "llm_core"


def forward_library_logs() -> None:
    """Send llm_core's progress (pages crawled, training steps) to the flow run's logs.

    What ``PREFECT_LOGGING_EXTRA_LOGGERS=llm_core`` does, done by the flow itself so that a
    worker's run, whose environment we do not control, logs the same as the CLI's."""
    library = logging.getLogger(LIBRARY_LOGGER)
    library.setLevel(logging.INFO)
    for handler in logging.getLogger("prefect.extra").handlers:
        if handler not in library.handlers:
            library.addHandler(handler)


@flow(name="pipeline", log_prints=True)
def pipeline(config: PipelineConfig = PipelineConfig(), stop_after: StageName = "evaluate",
             start_at: StageName = "crawl") -> dict[str, Any]:
    """Run the stages up to and including ``stop_after``; finished stages are cached.

    ``start_at``: the stages before it must already be built for this config (they are read,
    never rebuilt): what a ``train`` deployment scheduled after a ``data`` one wants, failing
    clearly when the data has not been built rather than crawling on its own."""
    forward_library_logs()
    logger = get_run_logger()
    config = config.for_run()  # absolute data root, refresh turned into a snapshot: fixed for the whole run
    check_services(config)  # a server that is down: said now, not by the stage that first needs it
    flow_run = get_run_context().flow_run
    started = datetime.now(timezone.utc)
    stages = STAGES[: STAGES.index(stop_after) + 1]
    if STAGES.index(start_at) > STAGES.index(stop_after):
        raise PipelineError(f"start_at {start_at} comes after stop_after {stop_after}")
    planned_outputs = plan(config)
    require_built(planned_outputs, start_at)
    # This machine's outputs the run uses (gc keeps them): on an object store, the local copies.
    planned = {p.stage: output_dir(config.project.local_dir, p.stage, p.key) for p in planned_outputs
               if p.stage in stages}
    record = dict(data_root=config.project.local_dir, run_id=str(flow_run.id), started_at=started,
                  outputs=planned, name=flow_run.name)
    runs.record_run(**record, state="running")
    outputs: dict[str, StageOutput] = {}
    status: dict[str, str] = {}
    summary: dict[str, Any] = {"flow_run_id": str(flow_run.id), "flow_run_name": flow_run.name}

    try:
        with tracking.pipeline_run(config, run_name=flow_run.name,
                                   tags={"prefect.flow_run_id": str(flow_run.id)}) as run_id:
            summary["mlflow_run_id"] = run_id
            summary["mlflow_tracking_uri"] = tracking.redact_uri(tracking.tracking_uri(config.project))
            for stage_task in STAGE_TASKS[: len(stages)]:
                stage = get_stage(stage_task.name)
                inputs = {name: outputs[name] for name in stage.inputs}
                with tracking.stage_run(run_id, stage.name) as stage_run_id:  # open while the stage runs
                    output, status[stage.name] = run_stage_task(stage_task, config, inputs)
                    outputs[stage.name] = output
                    logger.info("%s: %s %s", stage.name, status[stage.name], output.location)
                    tracking.log_stage(run_id, stage, output, stage.config(config), status[stage.name],
                                       run_id=stage_run_id)
                runs.record_run(**record, state="running", status=status)  # progress, and a heartbeat for gc

            if "evaluate" in outputs:
                summary["registered_model"] = register_and_select(config, outputs)
                summary["report"] = str(outputs["evaluate"].file(REPORT_MD))
    except BaseException:
        runs.record_run(**record, state="failed", status=status)
        raise
    runs.record_run(**record, state="completed", status=status)

    summary["data_root"] = str(config.project.data_root)
    summary["stages"] = {
        name: {"path": out.location, "status": status[name], "wall_s": out.stats.get("wall_s")}
        for name, out in outputs.items()
    }
    return summary


def require_built(planned: list, start_at: str) -> None:
    """Every stage before ``start_at`` must have its output for this config already."""
    missing = [p for p in planned[: STAGES.index(start_at)] if not p.complete]
    if missing:
        raise PipelineError(f"start_at {start_at}: the {missing[0].stage} output this config needs "
                            f"({missing[0].path}) is not built; run the stages up to "
                            f"{STAGES[STAGES.index(start_at) - 1]} first (the data deployment, or "
                            f"`llmpipe stage {STAGES[STAGES.index(start_at) - 1]}`)")


def register_and_select(config: PipelineConfig, outputs: dict[str, StageOutput]) -> dict[str, Any]:
    """Register the evaluated model once per model output, with every evaluation metric and the
    output key of every stage that produced it, then decide champion or challenger.

    The evaluate stage's report cannot hold the decision (the stage's output depends on its
    inputs only, the decision on the registry's state), so the reviewer's report is put
    together here: the decision with both scores, then the evaluation report and its loss
    curves, on the pipeline's MLflow run (``report.md``, ``report.html``) and as the
    ``model-report`` Prefect artifact."""
    project = config.project
    name = project.registered_model_name
    evaluation = outputs["evaluate"]
    version, new = registry.register_model(
        name, outputs["train"].key, outputs["train"].file(MODEL_FILE), outputs["tokenizer"].file(TOKENIZER_FILE),
        metrics=tracking.numeric_metrics({k: v for k, v in evaluation.stats.items() if k not in ("code", "wall_s")}),
        lineage={**{f"{stage}_key": out.key for stage, out in outputs.items()},
                 **(outputs["train"].stats.get("lineage") or {})},
    )
    selection = registry.select_champion(name, version, project.champion_metric, project.champion_higher_is_better)
    report = "\n\n".join([registry.selection_markdown(name, selection, project.champion_higher_is_better),
                           evaluation.file(REPORT_MD).read_text().replace("# Evaluation report", "# Evaluation", 1)])
    mlflow.log_text(report, "report.md")
    mlflow.log_text(render_html(report), "report.html")
    curves = evaluation.file(LOSS_CURVES_PNG)
    if curves.is_file():
        mlflow.log_artifact(str(curves))
    create_markdown_artifact(key="model-report", markdown=report,
                             description="champion / challenger decision and the evaluation report")
    return {"name": name, "version": version, "new": new, "selection": registry.selection_dict(selection)}
