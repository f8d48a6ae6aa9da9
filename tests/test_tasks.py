"""The Prefect side of a stage: which failures are retried, retries and timeouts from the config."""

import time

import pytest
from prefect import flow, task

from llm_core.config import PipelineConfig, TaskSettings
from llm_core.errors import StageError
from tasks import STAGE_TASKS
from tasks.common import configured, worth_retrying


def attempts_until_failure(error: Exception) -> int:
    calls = []

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=worth_retrying)
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
    # A bug in our code fails at once, with its own traceback.
    assert attempts_until_failure(KeyError("vocab_size")) == 1
    assert attempts_until_failure(TypeError("unsupported operand")) == 1


def test_transient_failures_are_retried(prefect_api):
    assert attempts_until_failure(StageError("train", "worker killed", retryable=True)) == 3
    assert attempts_until_failure(ConnectionResetError("connection reset by peer")) == 3
    import httpx

    assert attempts_until_failure(httpx.ConnectTimeout("timed out")) == 3


def test_a_stage_past_its_timeout_is_stopped_and_not_retried(prefect_api, tmp_path):
    calls = []

    @task(retry_condition_fn=worth_retrying)
    def slow():
        calls.append(1)
        time.sleep(30)

    @flow
    def run():
        return configured(slow, TaskSettings(retries=2, retry_delay_s=0, timeout_s=1), tmp_path)()

    started = time.monotonic()
    with pytest.raises(TimeoutError, match="timed out after 1.0 second"):
        run()
    assert len(calls) == 1, "a timeout is not retried"
    assert time.monotonic() - started < 20, "the stage was interrupted, not waited for"


def test_stage_tasks_in_pipeline_order_with_retries_from_the_config():
    assert [t.name for t in STAGE_TASKS] == ["crawl", "dedupe", "filter", "tokenizer", "train", "evaluate"]
    assert all(t.persist_result for t in STAGE_TASKS)
    defaults = PipelineConfig().tasks
    assert {name: getattr(defaults, name).retries for name in [t.name for t in STAGE_TASKS]} == {
        "crawl": 2, "dedupe": 0, "filter": 2, "tokenizer": 0, "train": 1, "evaluate": 0}
    train = configured(STAGE_TASKS[4], TaskSettings(retries=3, retry_delay_s=5, timeout_s=600), "/tmp/results")
    assert (train.retries, train.timeout_seconds) == (3, 600)
    assert train.retry_delay_seconds == [5, 10, 20]


def test_waiting_for_another_runs_build_does_not_count_against_the_timeout(prefect_api, tmp_path):
    """Another run holds the crawl's build lock for longer than this run's crawl timeout, then
    publishes the output: this run waits for it and reuses it instead of timing out."""
    import json
    import threading

    from filelock import FileLock

    from llm_core.config import parse_config
    from llm_core.locks import lock_path
    from tasks import TASKS_BY_STAGE
    from tasks.common import expected_output, run_stage_task

    config = parse_config({"project": {"data_root": str(tmp_path / "data")}, "crawl": {"seeds": ["http://127.0.0.1:9/"]},
                           "tasks": {"crawl": {"timeout_s": 1, "retries": 0}}}).for_run()
    output = expected_output("crawl", config, {})
    output.parent.mkdir(parents=True)
    holding = threading.Event()

    def other_run():
        with FileLock(lock_path(output)):
            holding.set()
            time.sleep(2.5)  # well past the 1 s timeout
            output.mkdir()
            (output / "stats.json").write_text(json.dumps({"docs_out": 3}))
            (output / "_SUCCESS").write_text("done")

    builder = threading.Thread(target=other_run)
    builder.start()
    holding.wait(10)

    @flow
    def run():
        return run_stage_task(TASKS_BY_STAGE["crawl"], config, {})

    out, status = run()
    builder.join()
    assert status == "reused" and out.stats["docs_out"] == 3
