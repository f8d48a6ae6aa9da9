"""The tiny pipeline embedded and against servers on the same machine: the distributed mode's overhead.

- **embedded**: ``llmpipe run --config configs/tiny.yaml`` as shipped (ephemeral Prefect API,
  MLflow on SQLite, Spark ``local[*]``, outputs in a local folder).
- **servers**: the same config as a flow run of the ``pipeline`` deployment on a Prefect
  server, picked up by a ``process`` worker; MLflow on a Postgres backend store with its
  artifacts in S3; the Spark stages on a standalone master + worker; the stage outputs in S3
  (``project.data_root: s3://...``). Postgres is Debian's package, S3 is moto's server, all
  bound to 127.0.0.1 (the helpers of ``tests/servers.py``).

Both crawl the same demo site (pydoc); the output keys are the same in both modes (the
engines are not part of any key), which the benchmark checks. The services are started
before the clock starts; ``servers_s`` runs from the flow run's creation to its completion.
The last line printed is one JSON object:

    embedded_s, servers_s        wall time of the whole pipeline in each mode
    servers_over_embedded        servers_s / embedded_s (the overhead of the distributed mode)
    services_start_s             starting Postgres, S3, MLflow, Prefect, the worker and Spark
    stage_s                      {mode: {stage: seconds}} as each stage measured its own work
    same_keys                    the two runs built the same outputs

Usage: .venv/bin/python benchmarks/scaleout.py   (needs the test extra and Debian's postgresql)
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from llm_core.config import load_config  # noqa: E402
from llm_core.stages import STAGE_LIST  # noqa: E402
from servers import (  # noqa: E402
    S3_CREDENTIALS, api, free_port, mlflow_server, postgres, prefect_server, s3_client, s3_server, spark_cluster,
    stop,
)

from flows.services import demo_site  # noqa: E402

TINY = REPO / "configs" / "tiny.yaml"
POOL = "llmpipe-process"
OUT = REPO / "benchmarks" / "out" / "scaleout"
SPARK_CONF = {"spark.ui.enabled": "false", "spark.driver.host": "127.0.0.1", "spark.executor.memory": "1g"}


def stage_seconds(config_path: Path, overrides: list[str], local_root: Path) -> tuple[dict[str, float], list[str]]:
    """Each stage's own wall time, read from its stats.json (the local copy), and the output keys."""
    config = load_config(config_path, overrides).for_run()
    keys: dict[str, str] = {}
    for stage in STAGE_LIST:  # the keys alone: the services are gone by now
        keys[stage.name] = stage.key(config, keys)
    seconds = {name: json.loads((local_root / name / key / "stats.json").read_text())["wall_s"]
               for name, key in keys.items()}
    return seconds, list(keys.values())


def run_embedded(site: str) -> tuple[float, dict[str, float], list[str]]:
    root = OUT / "embedded"
    overrides = [f"project.data_root={root}", f"crawl.seeds=['{site}']"]
    args = [sys.executable, "-m", "flows.cli", "run", "--config", str(TINY)]
    for item in overrides:
        args += ["--set", item]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "MLFLOW_TRACKING_URI"))}
    started = time.perf_counter()
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"embedded run failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return (elapsed, *stage_seconds(TINY, overrides, root))


def prefect(*args: str, env: dict) -> None:
    result = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    if result.returncode != 0:
        sys.exit(f"prefect {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


def run_on_servers(site: str) -> tuple[float, float, dict[str, float], list[str]]:
    started = time.perf_counter()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "LLMPIPE_", "MLFLOW_"))}
    (OUT / "prefect").mkdir(parents=True)
    (OUT / "spark").mkdir()
    with postgres() as database, s3_server() as s3, prefect_server(OUT / "prefect") as prefect_api, \
            spark_cluster(OUT / "spark") as master:
        for bucket in ("mlflow", "data"):
            s3_client(s3).create_bucket(Bucket=bucket)
        with mlflow_server(database, "s3://mlflow/artifacts", s3) as mlflow_uri:
            client_env = {**clean, "PREFECT_API_URL": prefect_api}
            prefect("work-pool", "create", POOL, "--type", "process", env=client_env)
            prefect("--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--name", "pipeline",
                    env=client_env)
            base = OUT / "worker"
            base.mkdir()
            worker_env = {**client_env, **S3_CREDENTIALS, "MLFLOW_TRACKING_URI": mlflow_uri,
                          "LLMPIPE_BASE_DIR": str(base), "SPARK_LOCAL_IP": "127.0.0.1",
                          "PYSPARK_PYTHON": sys.executable}
            worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL],
                                      cwd=base, env=worker_env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                services_s = time.perf_counter() - started
                deployment = next(d for d in api("POST", f"{prefect_api}/deployments/filter", {})
                                  if d["name"] == "pipeline")
                overrides = {"project.data_root": "s3://data/tiny", "project.local_root": str(base / "local"),
                             "project.storage_options": {"endpoint_url": s3}, "crawl.seeds": [site],
                             "spark.master": master, "spark.conf": SPARK_CONF}
                config = load_config(TINY, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])
                run_started = time.perf_counter()
                run = api("POST", f"{prefect_api}/deployments/{deployment['id']}/create_flow_run",
                          {"parameters": {"config": config.model_dump(mode="json")}})
                state = None
                while state not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                    time.sleep(1)
                    state = api("GET", f"{prefect_api}/flow_runs/{run['id']}")["state"]["type"]
                elapsed = time.perf_counter() - run_started
                if state != "COMPLETED":
                    sys.exit(f"the flow run on the servers ended {state}: see the Prefect UI at {prefect_api}")
            finally:
                stop(worker)
    seconds, keys = stage_seconds(TINY, [f"{k}={json.dumps(v)}" for k, v in overrides.items()], base / "local")
    return elapsed, services_s, seconds, keys


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    site = f"http://127.0.0.1:{free_port()}/"
    with demo_site(site):
        embedded_s, embedded_stages, embedded_keys = run_embedded(site)
        servers_s, services_s, server_stages, server_keys = run_on_servers(site)
    figures = {
        "benchmark": "scaleout",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "embedded_s": round(embedded_s, 1),
        "servers_s": round(servers_s, 1),
        "servers_over_embedded": round(servers_s / embedded_s, 3),
        "services_start_s": round(services_s, 1),
        "stage_s": {"embedded": embedded_stages, "servers": server_stages},
        "same_keys": embedded_keys == server_keys,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
