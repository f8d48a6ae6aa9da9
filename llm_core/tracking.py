"""MLflow tracking: the one place MLflow is configured and written to.

One parent run per pipeline run and one child run per stage, cached or not (a cached
stage's child run carries the metrics of the output it reused and ``llmpipe.status=cached``),
so every pipeline run in the MLflow UI shows the whole lineage. The model registry is
:mod:`llm_core.registry`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from contextlib import contextmanager, nullcontext, suppress
from urllib.parse import urlsplit
from typing import Any, Iterator

import mlflow
from filelock import FileLock
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pydantic import BaseModel

from llm_core.config import PipelineConfig, ProjectConfig
from llm_core.stage import Stage
from llm_core.storage import STATS_FILE, StageOutput
from llm_core.train.monitor import LIVE_RUN_ENV

log = logging.getLogger(__name__)



def tracking_uri(project: ProjectConfig) -> str:
    """Config first, then ``$MLFLOW_TRACKING_URI``, then SQLite under the data root."""
    if project.mlflow_tracking_uri:
        return project.mlflow_tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    db = (project.local_dir / "mlflow" / "mlflow.db").resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def configure(project: ProjectConfig) -> str:
    """Point MLflow at the tracking store and make sure the experiment exists.

    On a local store the experiment's artifacts go under the data root too; MLflow's own
    default would be ``./mlruns`` in whatever directory we were started from. A SQLite store
    is created (and migrated) under a file lock: two first runs started together would
    otherwise both migrate the new database, and one would fail."""
    uri = tracking_uri(project)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    guard = FileLock(f"{uri.removeprefix('sqlite:///')}.lock") if uri.startswith("sqlite:///") else nullcontext()
    with guard:
        client = MlflowClient()
        if client.get_experiment_by_name(project.mlflow_experiment) is None:
            artifacts = None
            if uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri:
                artifacts = (project.local_dir / "mlflow" / "artifacts").resolve().as_uri()
            with suppress(MlflowException):  # created meanwhile by a concurrent run
                client.create_experiment(project.mlflow_experiment, artifact_location=artifacts)
    mlflow.set_experiment(project.mlflow_experiment)
    return uri


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


# Settings whose value is a credential, by name (spark.conf's spark.hadoop.fs.s3a.secret.key,
# a password, an access token): logged as REDACTED, never as given.
SECRET_NAME = re.compile(r"(^|[._-])(secret|passw(or)?d|credentials?|(api|access|private|secret)[._-]?key|"
                         r"(auth|access|api|bearer)[._-]?token)([._-]|$)", re.I)
REDACTED = "***"
SYSTEM_METRICS_STAGES = ("train",)  # the stages whose MLflow run gets the machine's system/* metrics
SYSTEM_METRICS_INTERVAL_S = 5.0


def redact_uri(value: str) -> str:
    """``scheme://user:password@host/...`` with the password replaced (a tracking URI, a database URL)."""
    parts = urlsplit(value)
    if parts.password is None:
        return value
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", f":{REDACTED}@", 1)).geturl()


def config_params(tree: dict[str, Any]) -> dict[str, Any]:
    """A config as MLflow params: flattened, credentials redacted. Credentials belong in the
    environment (AWS_*, MLFLOW_TRACKING_PASSWORD, ...) or a Prefect Secret block, not in the
    config; one that got there anyway is not copied into the tracking store."""
    def shown(value: Any) -> Any:
        if isinstance(value, list):
            return [shown(v) for v in value]
        return redact_uri(value) if isinstance(value, str) and "://" in value else value

    return {name: REDACTED if SECRET_NAME.search(name) else shown(value) for name, value in flatten(tree).items()}


def numeric_metrics(stats: dict[str, Any], tables: tuple[str, ...] = ()) -> dict[str, float]:
    """Every number in ``stats``; a table's rows are named by their text cells
    (``funnel.gopher_quality.docs_out``, ``funnel_by_language.de.language.docs_in``)."""
    tree = {k: v for k, v in stats.items() if k not in tables}
    for table in tables:
        rows = stats.get(table) or []
        tree[table] = {".".join(str(v) for v in row.values() if isinstance(v, str)): row for row in rows}
    return {
        k: float(v) for k, v in flatten(tree).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


@contextmanager
def pipeline_run(config: PipelineConfig, run_name: str, tags: dict[str, str] | None = None) -> Iterator[str]:
    """The parent run of one pipeline run; yields its id. A failure marks it FAILED."""
    configure(config.project)
    with mlflow.start_run(run_name=run_name, tags={"llmpipe.kind": "pipeline", **(tags or {})}) as run:
        mlflow.log_params(config_params(config.model_dump(mode="json")))
        yield run.info.run_id


@contextmanager
def stage_run(parent_run_id: str, stage: str) -> Iterator[str]:
    """The child run of one stage, opened before the stage runs so that the stage can log to
    it while it works (training curves, live: ``llm_core.train.monitor``); yields its id.

    The stage's processes find it through ``$LLMPIPE_MLFLOW_RUN_ID`` and ``$MLFLOW_TRACKING_URI``,
    set for the duration of the stage. A stage that fails marks it FAILED; :func:`log_stage`
    completes it."""
    client = MlflowClient()
    run = client.create_run(client.get_run(parent_run_id).info.experiment_id, run_name=stage,
                            tags={"mlflow.parentRunId": parent_run_id, "llmpipe.stage": stage,
                                  "llmpipe.status": "running"})
    saved = {name: os.environ.get(name) for name in (LIVE_RUN_ENV, "MLFLOW_TRACKING_URI")}
    os.environ[LIVE_RUN_ENV] = run.info.run_id
    os.environ["MLFLOW_TRACKING_URI"] = mlflow.get_tracking_uri()
    monitor = None
    if stage in SYSTEM_METRICS_STAGES:  # CPU, memory, disk, network (and GPUs through NVML) of this machine
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run.info.run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S,
                                       tracking_uri=mlflow.get_tracking_uri())
        monitor.start()
    try:
        yield run.info.run_id
    except BaseException:
        try:
            client.set_tag(run.info.run_id, "llmpipe.status", "failed")
            client.set_terminated(run.info.run_id, "FAILED")
        except Exception as exc:  # noqa: BLE001 (the stage's own error is the one to show)
            log.warning("could not mark the MLflow run of %s as failed: %s", stage, exc)
        raise
    finally:
        if monitor is not None:
            monitor.finish()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def log_stage(parent_run_id: str, stage: Stage, output: StageOutput, stage_config: BaseModel, status: str,
              run_id: str | None = None) -> str:
    """The child run of a stage (``run_id``, opened by :func:`stage_run`, or a new one): its
    config as params, its stats as metrics, the files its row names (``artifacts``: files or
    folders) as artifacts, its ``history_file`` as metric curves (unless the stage logged
    them live: ``logged_live`` in its stats), its ``tables`` as metrics named by their rows,
    its ``lineage`` (the model it started from) as ``llmpipe.lineage.*`` tags."""
    tags = {"mlflow.parentRunId": parent_run_id, "llmpipe.stage": output.stage,
            "llmpipe.output_key": output.key, "llmpipe.output_path": str(output.path),
            "llmpipe.status": status}
    code = output.stats.get("code")
    if isinstance(code, dict):
        tags["llmpipe.code_source"] = str(code.get("source"))
    for name, value in (output.stats.get("lineage") or {}).items():
        tags[f"llmpipe.lineage.{name}"] = str(value)
    opened = mlflow.start_run(run_id=run_id, nested=True, tags=tags) if run_id else \
        mlflow.start_run(run_name=output.stage, nested=True, tags=tags)
    with opened as run:
        mlflow.log_params(config_params(stage_config.model_dump(mode="json")))
        mlflow.log_metrics(numeric_metrics({k: v for k, v in output.stats.items() if k != "code"}, stage.tables))
        history = output.file(stage.history_file) if stage.history_file else None
        if history is not None and history.is_file() and not (status == "ran" and output.stats.get("logged_live")):
            # a training curve: one metric point per logged step
            for line in history.read_text().splitlines():
                record = json.loads(line)
                step = int(record.pop("step"))
                mlflow.log_metrics({f"train/{k}": float(v) for k, v in record.items()}, step=step)
        for path in [output.file(STATS_FILE), *(output.file(name) for name in stage.artifacts)]:
            if path.is_file():
                mlflow.log_artifact(str(path))
            elif path.is_dir():  # a saved model: logged as a folder of the same name
                mlflow.log_artifacts(str(path), artifact_path=path.name)
        return run.info.run_id
