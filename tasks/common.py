"""What every stage task shares: the cache policy, retries, result storage, the summary artifact.

A stage task is ``llm_core.stages.run_stage`` under Prefect. Its cache key is the stage's
content address (config section, input keys, code version) plus the task's source, so
Prefect's cache and the ``_SUCCESS``-marked output agree; ``run_stage_task`` refreshes the cache
when the output it points to has gone (deleted by hand, another data root).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import Task, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import TASK_SOURCE, CachePolicy
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff

from llm_core.config import PipelineConfig
from llm_core.errors import PipelineError
from llm_core.stages import get_stage, run_stage
from llm_core.storage import StageOutput, is_complete, output_dir

StageInputs = dict[str, StageOutput]


@dataclass
class StageOutputPolicy(CachePolicy):
    """Cache key = where the stage's output lives (data root, stage, content key)."""

    stage: str = ""

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str:
        return hashlib.sha256(str(expected_output(self.stage, inputs["config"], inputs["inputs"])).encode()).hexdigest()


def expected_output(stage: str, config: PipelineConfig, inputs: StageInputs) -> Path:
    key = get_stage(stage).key(config, {name: out.key for name, out in inputs.items()})
    return output_dir(Path(config.project.data_root).resolve(), stage, key)


def _worth_retrying(task: Task, task_run: Any, state: Any) -> bool:
    """Retry crashes and transient failures, not errors that would only happen again."""
    try:
        state.result()
    except PipelineError as exc:
        return bool(getattr(exc, "retryable", False))
    except Exception:
        return True
    return True


def stage_task(stage: str, retries: int = 0, backoff_s: float = 10.0) -> Task:
    """The Prefect task for one stage, named after it."""

    def run_in_task(config: PipelineConfig, inputs: StageInputs) -> StageOutput:
        output = run_stage(stage, config, inputs)
        create_markdown_artifact(
            key=f"{stage}-stats", markdown=stats_markdown(output), description=f"{stage} stage statistics"
        )
        return output

    run_in_task.__name__ = run_in_task.__qualname__ = f"{stage}_stage"
    return task(
        run_in_task,
        name=stage,
        cache_policy=StageOutputPolicy(stage=stage) + TASK_SOURCE,
        persist_result=True,
        retries=retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=backoff_s) if retries else 0,
        retry_condition_fn=_worth_retrying,
    )


def run_stage_task(stage_task_: Task, config: PipelineConfig, inputs: StageInputs) -> tuple[StageOutput, str]:
    """Run a stage task; return its output and how it was had.

    ``cached``: Prefect served the task from its cache; ``reused``: the task ran but found
    the output already built (Prefect's cache had been wiped); ``ran``: the stage did its work."""
    fresh = not is_complete(expected_output(stage_task_.name, config, inputs))
    state = stage_task_.with_options(refresh_cache=fresh)(config, inputs, return_state=True)
    output = state.result()  # raises the stage's error if it failed
    if state.name == "Cached":
        return output, "cached"
    return output, "reused" if output.reused else "ran"


def stats_markdown(output: StageOutput) -> str:
    rows = [f"| {k} | {v} |" for k, v in sorted(output.stats.items())]
    return "\n".join([f"# {output.stage}", "", f"Output: `{output.path}`", "", "| stat | value |", "|---|---|", *rows])
