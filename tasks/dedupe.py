"""Dedupe as a Prefect task: deterministic local work, nothing transient to retry."""

from tasks.common import stage_task

dedupe = stage_task("dedupe")
