"""The pipeline against servers instead of the embedded defaults, by configuration alone: a
Prefect server, an MLflow tracking server on a Postgres backend store with its artifacts in S3
(moto), all on 127.0.0.1, found through ``PREFECT_API_URL`` and ``MLFLOW_TRACKING_URI``, and the
stage outputs in S3 (``project.data_root: s3://...``); then both UIs opened in headless
Chromium as a person would see them."""

import pytest
from mlflow.tracking import MlflowClient

import re

from servers import S3_CREDENTIALS, browse, mlflow_server, postgres, prefect_server, s3_client, s3_server
from test_cli import TINY, llmpipe

pytestmark = pytest.mark.slow
BUCKET = "llmpipe-mlflow"
DATA_BUCKET = "llmpipe-data"
SMALL = ["--set", "crawl.max_pages=30", "--set", "train.max_steps=24", "--set", "train.warmup_steps=2",
         "--set", "train.checkpoint.every_steps=0", "--set", "train.validation.every_steps=12"]


def test_the_pipeline_runs_against_prefect_and_mlflow_servers(site, tmp_path):
    home = tmp_path / "prefect"
    home.mkdir()
    with postgres() as database, s3_server() as s3, prefect_server(home) as api:
        s3_client(s3).create_bucket(Bucket=BUCKET)
        s3_client(s3).create_bucket(Bucket=DATA_BUCKET)
        in_s3 = ["--set", f"project.data_root=s3://{DATA_BUCKET}/tiny", "--set",
                 f"project.storage_options={{endpoint_url: '{s3}'}}", "--set", f"crawl.seeds=['{site.url}']", *SMALL]
        with mlflow_server(database, f"s3://{BUCKET}/artifacts", s3) as uri:
            result = llmpipe("run", "--config", str(TINY), "--set", f"project.local_root={tmp_path / 'data'}",
                             *in_s3, env={"MLFLOW_TRACKING_URI": uri, "PREFECT_API_URL": api, **S3_CREDENTIALS},
                             timeout=600)
            assert result.returncode == 0, result.stderr[-3000:]
            check_the_outputs_are_in_s3(s3, in_s3, tmp_path)
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # not the registry an earlier test set
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
            check_the_uis(result.stdout, api, uri, experiment.experiment_id, tmp_path)
        assert not (tmp_path / "data" / "mlflow").exists(), "nothing of MLflow's under the local root"


def check_the_outputs_are_in_s3(s3: str, in_s3: list[str], tmp_path) -> None:
    """Every stage's output is at its S3 address with its marker; another machine (an empty local
    root) sees them all as built."""
    keys = [o["Key"] for o in s3_client(s3).list_objects_v2(Bucket=DATA_BUCKET, Prefix="tiny/").get("Contents", [])]
    marked = {key.split("/")[1] for key in keys if key.endswith("/_SUCCESS")}
    assert marked == {"crawl", "dedupe", "filter", "tokenizer", "train", "evaluate"}, marked
    assert not [key for key in keys if "/.tmp-" in key], "no temporary prefix is left"
    status = llmpipe("status", "--config", str(TINY), "--set", f"project.local_root={tmp_path / 'elsewhere'}",
                     *in_s3, env=S3_CREDENTIALS)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.strip().splitlines()
    assert len(lines) == 6 and all(line.split()[1] == "done" for line in lines), status.stdout
    assert all(f"s3://{DATA_BUCKET}/tiny/" in line for line in lines), status.stdout


def check_the_uis(summary: str, api: str, mlflow_uri: str, experiment_id: str, out) -> None:
    """The flow run with its task runs, the MLflow run with its child runs, the registered model:
    each page, rendered by Chromium, names the run (screenshots in ``out``; the README's come from here)."""
    flow_run_name, flow_run_id = re.search(r"Prefect flow run: (\S+) \((\S+)\)", summary).groups()
    mlflow_run_id = re.search(r"MLflow run: (\w+)", summary).group(1)
    ui = api.removesuffix("/api")
    pages = {
        "prefect_flow_run": (f"{ui}/runs/flow-run/{flow_run_id}", [flow_run_name, "train"]),
        "mlflow_run": (f"{mlflow_uri}/#/experiments/{experiment_id}/runs/{mlflow_run_id}", [flow_run_name]),
        "mlflow_runs": (f"{mlflow_uri}/#/experiments/{experiment_id}/runs", [flow_run_name]),
        "mlflow_model": (f"{mlflow_uri}/#/models/llmpipe-tiny-gpt/versions/1", ["llmpipe-tiny-gpt", flow_run_name]),
    }
    for name, (url, expected) in pages.items():
        dom = browse(url, out / f"{name}.png")
        missing = [text for text in expected if text not in dom]
        assert not missing, f"{name} ({url}) does not show {missing}"
        assert (out / f"{name}.png").stat().st_size > 10_000, f"{name}: an empty screenshot"
