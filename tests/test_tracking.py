"""MLflow child runs of a stage: tables as metrics, folders of the output as artifacts."""

import json

import mlflow
from mlflow.tracking import MlflowClient

from llm_core.config import FilterConfig, ProjectConfig
from llm_core.stages import STAGES_BY_NAME
from llm_core.storage import STATS_FILE, StageOutput
from llm_core.tracking import configure, log_stage, numeric_metrics


def test_tables_become_metrics_named_by_their_rows():
    stats = {"docs_out": 3, "funnel": [{"rule": "c4", "docs_in": 5, "docs_out": 3}],
             "funnel_by_language": [{"language": "de", "rule": "c4", "docs_in": 2}], "rules": ["c4"]}
    assert numeric_metrics(stats, ("funnel", "funnel_by_language")) == {
        "docs_out": 3.0, "funnel.c4.docs_in": 5.0, "funnel.c4.docs_out": 3.0, "funnel_by_language.de.c4.docs_in": 2.0}


def test_filter_child_run_logs_the_funnel_and_the_classifier_folder(tmp_path):
    project = ProjectConfig(data_root=tmp_path / "data", mlflow_tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
                            mlflow_experiment="tracking-test")
    configure(project)
    out = tmp_path / "filter" / "abc"
    (out / "models" / "quality_classifier" / "model").mkdir(parents=True)
    (out / "models" / "quality_classifier" / "fit.json").write_text("{}")
    (out / "models" / "quality_classifier" / "model" / "metadata").write_text("spark")
    stats = {"docs_in": 5, "docs_out": 3, "funnel": [{"rule": "language", "docs_in": 5, "docs_out": 3}]}
    (out / STATS_FILE).write_text(json.dumps(stats))
    stage = STAGES_BY_NAME["filter"]
    with mlflow.start_run() as parent:
        output = StageOutput(stage="filter", key="abc", path=out, stats=stats)
        run_id = log_stage(parent.info.run_id, stage, output, FilterConfig(), "ran")
    client = MlflowClient(project.mlflow_tracking_uri)
    assert client.get_run(run_id).data.metrics["funnel.language.docs_out"] == 3
    logged = {a.path for a in client.list_artifacts(run_id, "models/quality_classifier")}
    assert logged == {"models/quality_classifier/fit.json", "models/quality_classifier/model"}


def test_no_credential_in_the_config_reaches_the_tracking_store(tmp_path):
    """A recognisable fake secret in spark.conf and a password in a URI are logged redacted;
    tokenizer settings named like tokens are not mistaken for secrets."""
    from llm_core.config import PipelineConfig
    from llm_core.tracking import REDACTED, pipeline_run

    secret = "FAKE-SECRET-7f3a9c"
    config = PipelineConfig.model_validate({
        "project": {"data_root": str(tmp_path / "data"), "mlflow_tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                    "mlflow_experiment": "secrets"},
        "spark": {"conf": {"spark.hadoop.fs.s3a.secret.key": secret, "spark.hadoop.fs.s3a.access.key": secret,
                           "spark.executor.memory": "2g"}},
        "crawl": {"seeds": [f"http://user:{secret}@127.0.0.1:9/"]}})
    with pipeline_run(config, run_name="secrets") as run_id:
        pass
    params = MlflowClient(config.project.mlflow_tracking_uri).get_run(run_id).data.params
    assert not [name for name, value in params.items() if secret in value], "the secret was logged"
    assert params["spark.conf.spark.hadoop.fs.s3a.secret.key"] == REDACTED
    assert params["spark.conf.spark.executor.memory"] == "2g"
    assert params["evaluate.sample_tokens"] == "48"
