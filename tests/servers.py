"""Throwaway servers on 127.0.0.1 for the scale-out tests: a Postgres cluster (Debian's
``postgresql`` package), an S3 server (moto's server mode) and an MLflow tracking server on both."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

from conftest import free_port, skip_or_fail

S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def wait_until(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"{what} did not come up in {timeout} s")


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 (a server's health endpoint)."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def api(method: str, url: str, body: dict | None = None, timeout: float = 60) -> dict | list:
    """One call to a server's JSON API, retried while the server is busy (a 5xx, a timeout: an
    SQLite-backed Prefect server on a loaded 2-core machine answers "database is locked"); any
    other failure is raised with the server's answer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.request(method, url, json=body, timeout=30)
            if response.status_code < 500:
                assert response.is_success, f"{method} {url}: {response.status_code} {response.text}"
                return response.json()
            failure = f"{response.status_code} {response.text}"
        except httpx.TransportError as error:
            failure = repr(error)
        if time.monotonic() > deadline:
            raise AssertionError(f"{method} {url} kept failing for {timeout} s: {failure}")
        time.sleep(1)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def postgres() -> Iterator[str]:
    """A new cluster in a temporary folder, trust authentication on 127.0.0.1 only, database
    ``mlflow``; yields its URL. Run as the ``postgres`` user when we are root (initdb refuses root)."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        skip_or_fail("Postgres is not installed (apt-get install postgresql)")
    bin_dir = Path(bins[-1]).parent
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = Path(tempfile.mkdtemp(prefix="llmpipe-pg-"))
    if as_owner:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    subprocess.run([*as_owner, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    server = subprocess.Popen([*as_owner, str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1",
                               "-p", str(port), "-k", str(data)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                                          capture_output=True).returncode == 0, "Postgres")
        subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow"],
                       check=True, capture_output=True)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
    finally:
        stop(server)
        shutil.rmtree(data, ignore_errors=True)


@contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 in server mode (a thread of this process); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                        region_name="us-east-1")


@contextmanager
def mlflow_server(backend: str, artifacts: str, s3_endpoint: str) -> Iterator[str]:
    """``mlflow server`` on the Postgres backend store, proxying artifacts to ``artifacts`` (an
    s3:// URI on ``s3_endpoint``); yields its URL. Clients need no S3 credentials."""
    port = free_port()
    env = {**os.environ, **S3_CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": s3_endpoint}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
                               "--artifacts-destination", artifacts, "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{url}/health"), "the MLflow server", timeout=120)
        yield url
    finally:
        stop(server)


@contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """``prefect server`` on 127.0.0.1 (SQLite under ``home``); yields its API URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    api = f"http://127.0.0.1:{port}/api"
    # The UI's scripts call the API at PREFECT_UI_API_URL (default: port 4200).
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_API_URL=api)
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, cwd=home, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: answers(f"{api}/health"), "the Prefect server", timeout=120)
        yield api
    finally:
        stop(server)


def browse(url: str, screenshot: Path) -> str:
    """Open ``url`` in headless Chromium (Debian's ``chromium``), let its scripts run, save a
    screenshot and return the rendered page's DOM."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        skip_or_fail("Chromium is not installed (apt-get install chromium)")
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              "--window-size=1440,900", "--virtual-time-budget=20000"]
    subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True)
    return subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120,
                          check=True).stdout


@contextmanager
def spark_cluster(logs: Path, cores: int = 2, memory: str = "2g") -> Iterator[str]:
    """A Spark standalone master and one worker on 127.0.0.1, started with the ``spark-class``
    launcher of the installed pyspark (logs under ``logs``); yields the master URL. The worker's
    executors run this interpreter's Python workers."""
    import json
    import urllib.request

    import pyspark

    home = Path(pyspark.__file__).parent
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable,
           "SPARK_LOG_DIR": str(logs), "SPARK_WORKER_DIR": str(logs / "work")}
    port, ui = free_port(), free_port()
    url = f"spark://127.0.0.1:{port}"
    commands = {
        "master": ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                   "--webui-port", str(ui)],
        "worker": ["org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", str(cores),
                   "--memory", memory, "--webui-port", str(free_port())],
    }

    def a_worker_is_alive() -> bool:
        if any(p.poll() is not None for p in processes):
            tails = {p.name: p.read_text()[-2000:] for p in logs.glob("*.log")}
            raise AssertionError(f"the Spark standalone cluster did not start: {tails}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2) as response:
                return json.load(response).get("aliveworkers", 0) >= 1
        except OSError:
            return False

    processes: list[subprocess.Popen] = []
    try:
        for name, args in commands.items():
            with (logs / f"{name}.log").open("wb") as log:
                processes.append(subprocess.Popen([str(home / "bin" / "spark-class"), *args], env=env, stdout=log,
                                                  stderr=subprocess.STDOUT, start_new_session=True))
        wait_until(a_worker_is_alive, "the Spark standalone cluster", timeout=120)
        yield url
    finally:
        for process in reversed(processes):
            stop(process)
