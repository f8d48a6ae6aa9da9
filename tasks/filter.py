"""Filter as a Prefect task: retried, since a Spark executor or cluster can fail transiently."""

from tasks.common import stage_task

filter_ = stage_task("filter", retries=2)
