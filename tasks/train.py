"""Training as a Prefect task: retried, since a training process can be killed (OOM, preemption)."""

from tasks.common import stage_task

train = stage_task("train", retries=1, backoff_s=30.0)
