"""The whole flow through real Prefect (temporary API), Spark, DeepSpeed and MLflow (SQLite)."""

import shutil

import pytest
from mlflow.tracking import MlflowClient

from llm_core.config import STAGES, parse_config
from llm_core.runs import recorded_runs

pytestmark = pytest.mark.slow


def tiny_config(site, tmp_path, spark_config, **overrides):
    tree = {
        "project": {"data_root": str(tmp_path / "data"), "mlflow_tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                    "mlflow_experiment": "test", "registered_model_name": "test-gpt"},
        "spark": spark_config.model_dump(),
        "crawl": {"seeds": [site.url], "max_pages": 40, "max_depth": 1, "allow_private": ["127.0.0.1"]},
        "filter": {"rules": ["language", "gopher_quality"], "language": {"languages": ["de", "en"], "threshold": 0.5}},
        "tokenizer": {"vocab_size": 512},
        "train": {"model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32}, "max_steps": 10,
                  "micro_batch_size": 4, "grad_accum_steps": 1, "warmup_steps": 2, "log_every": 5},
        "evaluate": {"num_samples": 1, "sample_tokens": 8, "max_batches": 20},
    }
    for section, values in overrides.items():
        tree[section] = {**tree[section], **values}
    return parse_config(tree)


def table_artifact_rows(key: str) -> int:
    """Rows of the newest table artifact ``key`` in the Prefect API."""
    import asyncio
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read():
        async with get_client() as client:
            return await client.read_latest_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))

    (artifact,) = asyncio.run(read())
    data = artifact.data if isinstance(artifact.data, list) else json.loads(artifact.data)
    return len(data)


def statuses(summary):
    return {name: info["status"] for name, info in summary["stages"].items()}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One data root (and MLflow store) for the module: the second test's crawl and dedupe are
    those the first one built (Prefect's cache answers), not a second crawl and dedupe of the
    same site with the same settings."""
    return tmp_path_factory.mktemp("pipeline")


def test_pipeline_runs_caches_and_reruns_only_downstream(site, prefect_api, spark_config, root):
    from flows.pipeline import pipeline

    config = tiny_config(site, root, spark_config)
    first = pipeline(config=config)
    assert statuses(first) == dict.fromkeys(STAGES, "ran")
    registered = first["registered_model"]
    assert {k: registered[k] for k in ("name", "version", "new")} == {"name": "test-gpt", "version": 1, "new": True}
    assert registered["selection"]["decision"] == "first champion" and registered["selection"]["champion"] == 1

    client = MlflowClient(config.project.mlflow_tracking_uri)
    children = client.search_runs(
        [client.get_experiment_by_name("test").experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{first['mlflow_run_id']}'",
    )
    by_stage = {r.data.tags["llmpipe.stage"]: r for r in children}
    assert set(by_stage) == set(STAGES)
    assert {r.data.tags["llmpipe.status"] for r in children} == {"ran"}
    assert by_stage["crawl"].data.metrics["docs_out"] >= 20
    assert by_stage["tokenizer"].data.params["vocab_size"] == "512"
    assert by_stage["evaluate"].data.metrics["perplexity"] > 1
    assert [m.step for m in client.get_metric_history(by_stage["train"].info.run_id, "train/loss")] == [5, 10]
    # The filter's audit: its funnel as metrics and as a Prefect table artifact.
    filter_metrics = by_stage["filter"].data.metrics
    assert filter_metrics["funnel.language.docs_in"] == by_stage["dedupe"].data.metrics["docs_out"]
    assert filter_metrics["funnel.gopher_quality.docs_out"] == filter_metrics["docs_out"]
    assert any(k.startswith("funnel_by_language.de.") for k in filter_metrics)
    assert table_artifact_rows("filter-funnel") == len(config.filter.rules)
    # The dedupe's passes, likewise.
    dedupe_metrics = by_stage["dedupe"].data.metrics
    assert dedupe_metrics["passes.url.docs_in"] == by_stage["crawl"].data.metrics["docs_out"]
    assert dedupe_metrics["passes.near.docs_out"] == dedupe_metrics["docs_out"]
    assert table_artifact_rows("dedupe-passes") == 3
    version = client.get_model_version("test-gpt", "1")
    assert version.tags["llmpipe.model_key"] == first["stages"]["train"]["path"].rsplit("/", 1)[-1]
    assert version.tags["lineage.crawl_key"] == first["stages"]["crawl"]["path"].rsplit("/", 1)[-1], "lineage"
    assert float(version.tags["bits_per_byte"]) == by_stage["evaluate"].data.metrics["bits_per_byte"]
    report = client.download_artifacts(first["mlflow_run_id"], "report.md")
    text = open(report).read()
    assert "**first champion**" in text and "# Evaluation" in text, "the decision, then the evaluation report"
    # The registered model is a text-in, text-out pyfunc (what `mlflow models serve` serves).
    import mlflow

    served = mlflow.pyfunc.load_model("models:/test-gpt@champion")
    (completion,) = served.predict(["The"], params={"max_new_tokens": 5})
    assert isinstance(completion, str)

    # Nothing changed: every stage is served from Prefect's cache; the model is not registered again.
    second = pipeline(config=config)
    assert statuses(second) == dict.fromkeys(STAGES, "cached")
    assert second["registered_model"]["version"] == 1 and not second["registered_model"]["new"]

    # Prefect's own cache wiped: every task runs, but each finds its output and does no work.
    shutil.rmtree(root / "data" / "prefect" / "storage")  # the flow keeps them under the data root
    after_wipe = pipeline(config=config)
    assert after_wipe["stages"] == {name: {**info, "status": "reused"} for name, info in first["stages"].items()}

    # One stage's setting changed: that stage and those after it rerun, none before.
    changed = tiny_config(site, root, spark_config, tokenizer={"vocab_size": 600})
    third = pipeline(config=changed)
    assert statuses(third) == {"crawl": "cached", "dedupe": "cached", "filter": "cached",
                               "tokenizer": "ran", "train": "ran", "evaluate": "ran"}
    assert {k: third["registered_model"][k] for k in ("name", "version", "new")} == {
        "name": "test-gpt", "version": 2, "new": True}
    decided = third["registered_model"]["selection"]
    assert decided["decision"] in ("promoted", "challenger") and decided["champion_before"] == 1
    champion = client.get_model_version_by_alias("test-gpt", "champion").version
    assert int(champion) == decided["champion"], "the alias follows the decision"

    # An output deleted by hand is rebuilt even though Prefect remembers the task.
    shutil.rmtree(third["stages"]["evaluate"]["path"])
    fourth = pipeline(config=changed)
    assert statuses(fourth) == {**dict.fromkeys(STAGES, "cached"), "evaluate": "ran"}

    # A new crawl snapshot (what `crawl.refresh: daily` does each day): the crawl fetches anew.
    next_day = tiny_config(site, root, spark_config, crawl={"snapshot": "2026-11-29"})
    fifth = pipeline(config=next_day, stop_after="dedupe")
    assert statuses(fifth) == {"crawl": "ran", "dedupe": "ran"}

    # Every run recorded the outputs it used (what `llmpipe gc` keeps), newest first.
    ours = {s["flow_run_id"] for s in (first, second, after_wipe, third, fourth, fifth)}
    records = [r for r in recorded_runs(root / "data") if r["run_id"] in ours]  # the data root is the module's
    assert [r["state"] for r in records] == ["completed"] * 6
    assert records[0]["outputs"] == {name: info["path"] for name, info in fifth["stages"].items()}
    assert records[0]["status"] == {"crawl": "ran", "dedupe": "ran"}


def test_a_corpus_filtered_to_nothing_stops_the_flow(site, prefect_api, spark_config, root):
    from flows.pipeline import pipeline

    from llm_core.errors import StageError

    def folders(stage):  # outputs and unfinished builds alike (lock files aside)
        directory = root / "data" / stage
        return {p.name for p in directory.iterdir() if p.is_dir()} if directory.exists() else set()

    before = {stage: folders(stage) for stage in ("filter", "tokenizer")}
    config = tiny_config(site, root, spark_config, filter={"language": {"languages": ["sw"]}})
    with pytest.raises(StageError, match=r"\[filter\] all \d+ documents were filtered out"):
        pipeline(config=config)
    assert folders("filter") == before["filter"], "the failed filter leaves nothing behind"
    assert folders("tokenizer") == before["tokenizer"], "no stage after it runs"
