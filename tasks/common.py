"""What every stage task shares: the cache policy, honest retries, timeouts, result storage.

A stage task is ``llm_core.stages.run_stage`` under Prefect. Its cache key is the stage's
output address (data root, stage, content key: config section, input keys, code
fingerprint), so Prefect's cache and the ``_SUCCESS``-marked output agree and a change to
a stage's code invalidates both; ``run_stage_task`` refreshes the cache when the output it
points to has gone (deleted by hand, collected by ``llmpipe gc``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import Task, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.task_engine import TaskRunTimeoutError
from prefect.tasks import exponential_backoff

from llm_core.config import PipelineConfig, TaskSettings
from llm_core.errors import is_transient
from llm_core.locks import wait_while_building
from llm_core.stages import get_stage, output_exists, output_location, run_stage
from llm_core.storage import StageOutput, output_dir

StageInputs = dict[str, StageOutput]
RESULTS_DIR = Path("prefect") / "storage"  # under the data root


@dataclass
class StageOutputPolicy(CachePolicy):
    """Cache key = where the stage's output lives (data root, stage, content key)."""

    stage: str = ""

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str:
        config = inputs["config"]
        location = output_location(config.project, self.stage, expected_key(self.stage, config, inputs["inputs"]))
        return hashlib.sha256(location.encode()).hexdigest()


def expected_key(stage: str, config: PipelineConfig, inputs: StageInputs) -> str:
    return get_stage(stage).key(config, {name: out.key for name, out in inputs.items()})


def expected_output(stage: str, config: PipelineConfig, inputs: StageInputs) -> Path:
    return local_output(config, stage, expected_key(stage, config, inputs))


def local_output(config: PipelineConfig, stage: str, key: str) -> Path:
    """This machine's folder for the output (on an object store, its local copy): where its lock is."""
    return output_dir(config.project.local_dir.resolve(), stage, key)


def worth_retrying(task: Task, task_run: Any, state: Any) -> bool:
    """Retry transient failures only (llm_core.errors.is_transient); a bug in our code fails
    at once with its traceback, and a stage past its timeout is not started again."""
    try:
        state.result()
    except TaskRunTimeoutError:
        return False
    except BaseException as exc:  # noqa: BLE001 (classified, then Prefect re-raises it)
        return is_transient(exc)
    return False


def results_storage(config: PipelineConfig) -> Path:
    """Prefect's task results under the data root, whoever starts the run (CLI, worker, serve).

    A path, not a ``LocalFileSystem`` block: Prefect accepts an unsaved path, and a block
    would have to be saved on the server first."""
    path = config.project.local_dir / RESULTS_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def stage_task(stage: str) -> Task:
    """The Prefect task for one stage, named after it; retries and timeout come from the config."""

    def run_in_task(config: PipelineConfig, inputs: StageInputs) -> StageOutput:
        output = run_stage(stage, config, inputs)
        create_markdown_artifact(
            key=f"{stage}-stats", markdown=stats_markdown(output), description=f"{stage} stage statistics"
        )
        report = get_stage(stage).report
        if report and output.file(report).is_file():
            create_markdown_artifact(key=f"{stage}-report", markdown=output.file(report).read_text(),
                                     description=f"{stage} stage report")
        for table in get_stage(stage).tables:
            if output.stats.get(table):
                create_table_artifact(key=f"{stage}-{table}".replace("_", "-"), table=output.stats[table],
                                      description=f"{stage} stage: {table}")
        return output

    run_in_task.__name__ = run_in_task.__qualname__ = f"{stage}_stage"
    return task(run_in_task, name=stage, cache_policy=StageOutputPolicy(stage=stage), persist_result=True,
                retry_condition_fn=worth_retrying)


def configured(stage_task_: Task, settings: TaskSettings, storage: Path) -> Task:
    """The task with this run's retries (exponential backoff with jitter), timeout and result storage."""
    return stage_task_.with_options(
        retries=settings.retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=settings.retry_delay_s) if settings.retries else 0,
        retry_jitter_factor=0.5 if settings.retries else None,
        timeout_seconds=settings.timeout_s,
        result_storage=storage,
    )


def run_stage_task(stage_task_: Task, config: PipelineConfig, inputs: StageInputs) -> tuple[StageOutput, str]:
    """Run a stage task with the run's settings; return its output and how it was had.

    ``cached``: Prefect served the task from its cache; ``reused``: the task ran but found
    the output already built (Prefect's cache had been wiped, or another run built it
    meanwhile); ``ran``: the stage did its work."""
    stage, settings = stage_task_.name, getattr(config.tasks, stage_task_.name)
    key = expected_key(stage, config, inputs)
    wait_while_building(local_output(config, stage, key))  # another run's build, outside the task's timeout
    fresh = not output_exists(config.project, stage, key)
    runnable = configured(stage_task_, settings, results_storage(config)).with_options(refresh_cache=fresh)
    state = runnable(config, inputs, return_state=True)
    output = state.result()  # raises the stage's error if it failed
    if state.name == "Cached":
        return output, "cached"
    return output, "reused" if output.reused else "ran"


def stats_markdown(output: StageOutput) -> str:
    tables = get_stage(output.stage).tables
    rows = [f"| {k} | {v} |" for k, v in sorted(output.stats.items()) if k != "code" and k not in tables]
    return "\n".join([f"# {output.stage}", "", f"Output: `{output.location}`", "", "| stat | value |", "|---|---|", *rows])
