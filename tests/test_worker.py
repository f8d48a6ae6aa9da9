"""A run started by a Prefect ``process`` worker from the shipped deployment is a CLI run:
same output keys, results and logs where the CLI puts them, nothing under the home directory."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servers import api
from test_cli import status, stop, wait_http

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
POOL = "llmpipe-process"  # the work pool named in deployments/prefect.yaml


def prefect(*args, env, timeout=180):
    result = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def test_a_worker_run_of_the_deployment_matches_the_cli(site, tmp_path, unused_port, monkeypatch, capsys):
    url = f"http://127.0.0.1:{unused_port}/api"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "LLMPIPE_"))}
    server_env = {**clean, "PREFECT_HOME": str(tmp_path / "server"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(unused_port)], cwd=tmp_path, env=server_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    worker = None
    try:
        wait_http(f"{url}/health")
        client_env = {**server_env, "PREFECT_API_URL": url}
        prefect("work-pool", "create", POOL, "--type", "process", env=client_env)
        prefect("--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--name", "pipeline",
                env=client_env)

        # The worker: its own (empty) home, no Prefect or llmpipe settings but the API and a base
        # for the deployment's relative data_root ("data").
        home, base = tmp_path / "home", tmp_path / "base"
        home.mkdir()
        base.mkdir()
        worker_env = {**clean, "HOME": str(home), "PREFECT_API_URL": url, "LLMPIPE_BASE_DIR": str(base)}
        worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL],
                                  cwd=tmp_path, env=worker_env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)

        (deployment,) = api("POST", f"{url}/deployments/filter", {})
        config = deployment["parameters"]["config"]
        config["crawl"] = {**config["crawl"], "seeds": [site.url], "max_pages": 5}
        run = api("POST", f"{url}/deployments/{deployment['id']}/create_flow_run",
                  {"parameters": {"config": config, "stop_after": "crawl"}})
        deadline, state = time.monotonic() + 240, None
        while time.monotonic() < deadline and state not in ("COMPLETED", "FAILED", "CRASHED"):
            time.sleep(0.5)
            state = api("GET", f"{url}/flow_runs/{run['id']}")["state"]["type"]
        assert state == "COMPLETED"

        # Same output key as the CLI computes for the same config and base directory (`llmpipe status`,
        # run in this process: no llmpipe setting but the base directory).
        for name in [k for k in os.environ if k.startswith("LLMPIPE_")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("LLMPIPE_BASE_DIR", str(base))
        monkeypatch.chdir(tmp_path)
        out = status("--config", str(REPO / "configs" / "tiny.yaml"), "--set", "crawl.refresh=daily",
                     "--set", f"crawl.seeds=['{site.url}']", "--set", "crawl.max_pages=5", capsys=capsys)
        crawl_line = out.splitlines()[0].split()
        assert crawl_line[:2] == ["crawl", "done"], out
        assert (base / "data" / "crawl" / crawl_line[2] / "_SUCCESS").is_file()

        assert any((base / "data" / "prefect" / "storage").iterdir()), "task results under the data root"
        assert list((base / "data" / "runs").glob("*.json")), "the run is recorded for gc"
        assert [p for p in home.rglob("*") if p.is_file()] == [], "the worker's run writes nothing under the home directory"
        logs = api("POST", f"{url}/logs/filter", {"logs": {"flow_run_id": {"any_": [run["id"]]}}})
        assert any("crawl: building" in log["message"] for log in logs), "llm_core's logs reach the flow run"
    finally:
        for proc in (worker, server):
            if proc is not None:
                stop(proc)
