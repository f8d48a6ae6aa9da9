"""``llmpipe``: the command line.

    llmpipe run --config FILE [--set key=value ...]      the whole pipeline
    llmpipe stage NAME --config FILE [--set ...]         up to and including one stage
    llmpipe status --config FILE [--set ...]             which stage outputs exist for this config
    llmpipe demo --config FILE                           serve the demo site on 127.0.0.1, then run
    llmpipe serve [--file deployments/prefect.yaml]      serve the deployments (schedules, UI runs)
    llmpipe ui [--config FILE]                           Prefect and MLflow UIs on 127.0.0.1 (its data root)

Prefect reads its settings when first imported, so this module sets the environment from
the config (state under the data root) before importing anything of Prefect's.
"""

from __future__ import annotations

import argparse
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

from llm_core.config import STAGES, PipelineConfig, load_config, parse_config
from llm_core.errors import PipelineError

DEFAULT_DEPLOYMENTS = Path("deployments/prefect.yaml")
DEFAULT_CONFIG = Path("configs/tiny.yaml")
PREFECT_PORT = 4200
MLFLOW_PORT = 5000


def setup_environment(config: PipelineConfig) -> None:
    """Keep Prefect's state under the data root (not ``~/.prefect``) unless the user chose a place."""
    data_root = Path(config.project.data_root).resolve()
    (data_root / "prefect").mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(data_root / "prefect"))
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(data_root / "prefect" / "storage"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "llm_core")
    # llm_core also logs outside flow runs (a stage called directly); that is not an error.
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def run_pipeline(config: PipelineConfig, stop_after: str = "evaluate") -> dict:
    setup_environment(config)
    from flows.pipeline import pipeline

    return pipeline(config=config, stop_after=stop_after)


def print_summary(summary: dict, config: PipelineConfig) -> None:
    print("\nPipeline finished.")
    print(f"  {'stage':<10} {'status':<7} {'built in':>8}  output")
    for name, info in summary["stages"].items():
        print(f"  {name:<10} {info['status']:<7} {info['wall_s'] or 0:>7.1f}s  {info['path']}")
    print(f"\nPrefect flow run: {summary['flow_run_name']} ({summary['flow_run_id']})")
    print(f"  UI: `llmpipe ui --config <this config>`, then "
          f"http://127.0.0.1:{PREFECT_PORT}/runs/flow-run/{summary['flow_run_id']}")
    print(f"MLflow run: {summary['mlflow_run_id']} (experiment {config.project.mlflow_experiment!r}, "
          f"store {summary['mlflow_tracking_uri']})")
    print(f"  UI: http://127.0.0.1:{MLFLOW_PORT}/#/experiments (after `llmpipe ui`)")
    if "registered_model" in summary:
        model = summary["registered_model"]
        print(f"Registered model: models:/{model['name']}/{model['version']}"
              f"{'' if model['new'] else ' (already registered by an earlier run)'}")
        print(f"Evaluation report: {summary['report']}")


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


def status(config: PipelineConfig) -> None:
    from llm_core.stages import plan

    for planned in plan(config):
        state = "done" if planned.complete else "missing"
        print(f"{planned.stage:<10} {state:<8} {planned.key}  {planned.path}")


# -- argument parsing --------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llmpipe", description="Raw web pages to an evaluated, registered model.")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(cmd: argparse.ArgumentParser, default: Path | None = None) -> argparse.ArgumentParser:
        cmd.add_argument("--config", required=default is None, default=default, type=Path,
                         help=f"pipeline YAML, e.g. {DEFAULT_CONFIG}")
        cmd.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a config value by dotted key, e.g. tokenizer.vocab_size=4096")
        return cmd

    with_config(sub.add_parser("run", help="run the whole pipeline"))
    stage = with_config(sub.add_parser("stage", help="run the pipeline up to and including one stage"))
    stage.add_argument("name", choices=STAGES)
    with_config(sub.add_parser("status", help="which stage outputs exist for this config"))
    with_config(sub.add_parser("demo", help="serve the demo site (pydoc) on the seed's port and run the pipeline"))
    serve_cmd = sub.add_parser("serve", help="serve the deployments in deployments/prefect.yaml")
    serve_cmd.add_argument("--file", type=Path, default=DEFAULT_DEPLOYMENTS)
    ui_cmd = with_config(sub.add_parser("ui", help="start the Prefect and MLflow UIs on 127.0.0.1"),
                         default=DEFAULT_CONFIG)
    ui_cmd.add_argument("--prefect-port", type=int, default=PREFECT_PORT)
    ui_cmd.add_argument("--mlflow-port", type=int, default=MLFLOW_PORT)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "serve":
            serve(args.file)
            return 0
        config = load_config(args.config, args.overrides)
        if args.command == "status":
            status(config)
        elif args.command == "ui":
            ui(config, args.prefect_port, args.mlflow_port)
        elif args.command == "demo":
            if not config.crawl.seeds:
                raise PipelineError("[crawl] no seed URLs: set crawl.seeds in the config")
            with demo_site(config.crawl.seeds[0]):
                summary = run_pipeline(config)
            print_summary(summary, config)
        else:
            summary = run_pipeline(config, stop_after=args.name if args.command == "stage" else "evaluate")
            print_summary(summary, config)
    except PipelineError as exc:
        print(f"llmpipe: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
