"""Prefect tasks over llm_core's stages, in pipeline order: one task per stage row."""

from llm_core.stages import STAGE_LIST
from tasks.common import stage_task

STAGE_TASKS = tuple(stage_task(stage.name) for stage in STAGE_LIST)
TASKS_BY_STAGE = {t.name: t for t in STAGE_TASKS}

__all__ = ["STAGE_TASKS", "TASKS_BY_STAGE"]
