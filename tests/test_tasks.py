"""The Prefect side of a stage: which failures are retried, and the retry settings per stage."""

import pytest
from prefect import flow, task

from llm_core.errors import StageError
from tasks import STAGE_TASKS
from tasks.common import _worth_retrying


def attempts_until_failure(error: Exception) -> int:
    calls = []

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=_worth_retrying)
    def flaky():
        calls.append(1)
        raise error

    @flow
    def run():
        flaky()

    with pytest.raises(type(error)):
        run()
    return len(calls)


def test_errors_that_would_recur_are_not_retried(prefect_api):
    assert attempts_until_failure(StageError("filter", "all documents were filtered out")) == 1


def test_transient_failures_are_retried(prefect_api):
    assert attempts_until_failure(StageError("train", "worker killed", retryable=True)) == 3
    assert attempts_until_failure(ConnectionError("executor lost")) == 3


def test_stage_tasks_in_pipeline_order_with_retries_where_failures_are_transient():
    assert [t.name for t in STAGE_TASKS] == ["crawl", "dedupe", "filter", "tokenizer", "train", "evaluate"]
    assert {t.name: t.retries for t in STAGE_TASKS} == {
        "crawl": 2, "dedupe": 0, "filter": 2, "tokenizer": 0, "train": 1, "evaluate": 0}
    assert all(t.persist_result for t in STAGE_TASKS)
