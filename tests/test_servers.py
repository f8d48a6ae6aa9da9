"""The pipeline against servers instead of the embedded defaults, by configuration alone:
an MLflow tracking server on a Postgres backend store with its artifacts in S3 (moto), all on
127.0.0.1, found through ``MLFLOW_TRACKING_URI``."""

import pytest
from mlflow.tracking import MlflowClient

from servers import mlflow_server, postgres, s3_client, s3_server
from test_cli import TINY, llmpipe

pytestmark = pytest.mark.slow
BUCKET = "llmpipe-mlflow"
SMALL = ["--set", "crawl.max_pages=30", "--set", "train.max_steps=24", "--set", "train.warmup_steps=2",
         "--set", "train.checkpoint.every_steps=0", "--set", "train.validation.every_steps=12"]


def test_the_pipeline_logs_to_an_mlflow_server_on_postgres_and_s3(site, tmp_path):
    with postgres() as database, s3_server() as s3:
        s3_client(s3).create_bucket(Bucket=BUCKET)
        with mlflow_server(database, f"s3://{BUCKET}/artifacts", s3) as uri:
            result = llmpipe("run", "--config", str(TINY), "--set", f"project.data_root={tmp_path / 'data'}",
                             "--set", f"crawl.seeds=['{site.url}']", *SMALL, env={"MLFLOW_TRACKING_URI": uri},
                             timeout=600)
            assert result.returncode == 0, result.stderr[-3000:]
            client = MlflowClient(uri)
            (experiment,) = [e for e in client.search_experiments() if e.name == "llmpipe-tiny"]
            runs = client.search_runs([experiment.experiment_id])
            stages = {r.data.tags.get("llmpipe.stage"): r for r in runs if r.data.tags.get("llmpipe.stage")}
            assert set(stages) == {"crawl", "dedupe", "filter", "tokenizer", "train", "evaluate"}
            train = stages["train"]
            assert "train/loss" in train.data.metrics or "loss" in train.data.metrics
            system = [m for m in train.data.metrics if m.startswith("system/")]
            assert any("cpu" in m for m in system) and any("memory" in m for m in system), system
            (version,) = client.search_model_versions("name = 'llmpipe-tiny-gpt'")
            assert version.tags["llmpipe.family"] == "gpt"
            stored = s3_client(s3).list_objects_v2(Bucket=BUCKET).get("Contents", [])
            assert any(o["Key"].endswith("model.pt") for o in stored), "the model's files are in S3"
        assert not (tmp_path / "data" / "mlflow").exists(), "nothing of MLflow's under the data root"
