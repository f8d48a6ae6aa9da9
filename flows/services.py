"""The servers ``llmpipe`` starts: the demo web site, the Prefect and MLflow UIs, served deployments.

Kept apart from the command line (flows/cli.py), which only parses and dispatches.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

from flows.environment import setup_environment
from llm_core.config import PipelineConfig, parse_config
from llm_core.errors import PipelineError

PREFECT_PORT = 4200
MLFLOW_PORT = 5000


# -- demo site --------------------------------------------------------------------------
def wait_for_port(host: str, port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.2)
    raise PipelineError(f"the demo site did not come up on {host}:{port} within {timeout_s:.0f} s; "
                        f"try `{sys.executable} -m pydoc -n {host} -p {port}` to see why")


@contextlib.contextmanager
def demo_site(seed: str) -> Iterator[None]:
    """Serve Python's standard-library documentation (pydoc) at the seed's host and port.

    ``-I -S`` limits it to the standard library, so the site is the same on every machine
    with this Python; pydoc's server quits when its standard input closes, so we hold a pipe open."""
    parts = urlsplit(seed)
    host, port = parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        raise PipelineError(f"{host}:{port} is already in use: stop what serves it, or change crawl.seeds")
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-m", "pydoc", "-n", host, "-p", str(port)],
                                cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(host, port)
            print(f"Demo site: pydoc serving the standard library's documentation at {seed} (pid {proc.pid})")
            yield
        finally:
            proc.terminate()
            proc.wait(timeout=10)


# -- serving and UIs ----------------------------------------------------------------------
def load_deployments(file: Path) -> list[dict]:
    import yaml

    if not file.is_file():
        raise PipelineError(f"deployment file {str(file)!r} does not exist (run from the repository root, "
                            "or pass --file)")
    spec = yaml.safe_load(file.read_text()) or {}
    deployments = spec.get("deployments") or []
    if not deployments:
        raise PipelineError(f"{file} declares no deployments")
    return deployments


def build_deployments(file: Path) -> list:
    """Turn the deployments of a prefect.yaml into runner deployments that ``prefect.serve`` serves."""
    from prefect.client.schemas.schedules import construct_schedule
    from prefect.flows import load_flow_from_entrypoint

    runner_deployments = []
    for spec in load_deployments(file):
        flow = load_flow_from_entrypoint(spec["entrypoint"])
        schedules = [construct_schedule(cron=s["cron"], timezone=s.get("timezone")) for s in spec.get("schedules") or []]
        runner_deployments.append(flow.to_deployment(
            name=spec["name"], parameters=spec.get("parameters") or {}, schedules=schedules,
            description=spec.get("description"), tags=spec.get("tags") or [],
            concurrency_limit=spec.get("concurrency_limit"),
        ))
    return runner_deployments


def prefect_api_reachable(url: str) -> bool:
    import httpx

    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url.rstrip('/')}/health", timeout=5).status_code == 200
    return False


def serve(file: Path) -> None:
    # Served runs keep their Prefect results under the data root of the (first) deployment's config.
    first = load_deployments(file)[0]
    setup_environment(parse_config((first.get("parameters") or {}).get("config") or {}, source=str(file)))
    os.environ.setdefault("PREFECT_API_URL", f"http://127.0.0.1:{PREFECT_PORT}/api")
    url = os.environ["PREFECT_API_URL"]
    if not prefect_api_reachable(url):
        raise PipelineError(f"no Prefect server answers at {url}: start one with `llmpipe ui` "
                            "(or point PREFECT_API_URL at yours)")
    from prefect import serve as prefect_serve

    deployments = build_deployments(file)
    print(f"Serving {len(deployments)} deployment(s) from {file} on {url}; Ctrl-C to stop.")
    prefect_serve(*deployments)


def ui(config: PipelineConfig, prefect_port: int, mlflow_port: int) -> None:
    """Run both UI servers until Ctrl-C or SIGTERM, then stop them and everything they started."""
    from llm_core.tracking import tracking_uri

    config = config.for_run()  # the data root a run would use ($LLMPIPE_BASE_DIR or the current directory)
    setup_environment(config)
    commands = [
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(config.project),
         "--host", "127.0.0.1", "--port", str(mlflow_port)],
    ]
    # Handlers set explicitly: a shell's background job starts with SIGINT ignored, and Ctrl-C must work.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # Each server in its own process group: both spawn workers, and the whole group is stopped.
    procs = [subprocess.Popen(cmd, env=dict(os.environ), start_new_session=True) for cmd in commands]
    print(f"Prefect UI: http://127.0.0.1:{prefect_port}   MLflow UI: http://127.0.0.1:{mlflow_port}   Ctrl-C to stop.")
    print(f"To send runs to this Prefect server: export PREFECT_API_URL=http://127.0.0.1:{prefect_port}/api")
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=20)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)  # whatever of the group is still there
            p.wait()
