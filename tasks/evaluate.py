"""Evaluation as a Prefect task."""

from tasks.common import stage_task

evaluate = stage_task("evaluate")
