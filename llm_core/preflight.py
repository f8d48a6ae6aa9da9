"""The services a run depends on, checked before any stage runs.

On the embedded defaults there is nothing to check (ephemeral Prefect, MLflow on SQLite, Spark
``local[*]``). Against servers, a service that is down would otherwise show up late and
obscurely: MLflow's client retries for minutes before failing the first stage, a Spark
master that is not there stalls the filter's session until its timeout. Here each is tried
once, briefly, and every one that does not answer is named with the setting that points at it.
"""

from __future__ import annotations

import os
import socket

import httpx

from llm_core.config import PipelineConfig
from llm_core.errors import PipelineError

TIMEOUT_S = 5.0


def problems(config: PipelineConfig, prefect_api: str | None = None) -> list[str]:
    """What does not answer: the object store of an ``s3://`` data root, the MLflow tracking
    server (when the store is a server), the Spark standalone master(s) (``spark://``), and the
    Prefect API when ``prefect_api`` is given."""
    from llm_core.stages import object_store
    from llm_core.tracking import tracking_uri

    found = []
    store = object_store(config.project)
    if store:
        try:
            store.check()
        except Exception as exc:  # noqa: BLE001 (any failure of the store's client is the finding)
            found.append(f"object store {store.url} (project.data_root) cannot be listed: {type(exc).__name__}: "
                         f"{str(exc)[:200]}")
    uri = tracking_uri(config.project)
    if uri.startswith(("http://", "https://")):
        setting = "project.mlflow_tracking_uri" if config.project.mlflow_tracking_uri else "$MLFLOW_TRACKING_URI"
        found += unanswered("MLflow tracking server", f"{uri.rstrip('/')}/health", setting)
    master = config.spark.master
    if master.startswith("spark://"):
        for endpoint in master.removeprefix("spark://").split(","):  # several masters: ZooKeeper HA
            host, _, port = endpoint.rpartition(":")
            try:
                socket.create_connection((host, int(port or 7077)), timeout=TIMEOUT_S).close()
            except OSError as exc:
                found.append(f"Spark master at spark://{endpoint} (spark.master) is not reachable: {exc}")
    if prefect_api:
        found += unanswered("Prefect server", f"{prefect_api.rstrip('/')}/health", "$PREFECT_API_URL")
    return found


def unanswered(service: str, url: str, setting: str) -> list[str]:
    from llm_core.tracking import redact_uri

    shown = redact_uri(url)  # the password masked, as in the run summary
    try:
        response = httpx.get(url, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        return [f"{service} at {shown} ({setting}) is not reachable: {type(exc).__name__}"]
    if response.status_code >= 400:
        return [f"{service} at {shown} ({setting}) answered HTTP {response.status_code}"]
    return []


def check_services(config: PipelineConfig, prefect_api: str | None = None) -> None:
    """Raise a PipelineError naming every service that does not answer."""
    found = problems(config, prefect_api)
    if found:
        raise PipelineError("services not available, nothing was run:\n  " + "\n  ".join(found))


def prefect_api_url() -> str | None:
    """The Prefect server this process would use, if one is configured (not the ephemeral API)."""
    return os.environ.get("PREFECT_API_URL") or None
