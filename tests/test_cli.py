"""``llmpipe`` as a user runs it: a subprocess with its own data root."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from servers import api

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"


def llmpipe(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_status_lists_every_stage(tmp_path):
    result = llmpipe("status", "--config", str(TINY), "--set", f"project.data_root={tmp_path}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["crawl", "dedupe", "filter", "tokenizer", "train", "evaluate"]
    assert all(line.split()[1] == "missing" and str(tmp_path) in line for line in lines)


def test_config_typo_fails_before_any_stage(tmp_path):
    result = llmpipe("run", "--config", str(TINY), "--set", f"project.data_root={tmp_path}",
                     "--set", "tokenizer.vocab_sise=4096")
    assert result.returncode == 1
    assert "tokenizer.vocab_sise: Extra inputs are not permitted" in result.stderr
    assert not any(tmp_path.iterdir()), "nothing may be written for an invalid config"


def test_unreachable_seed_names_the_stage_and_leaves_no_output(tmp_path, unused_port):
    # A host down is retryable: the crawl's retries (2 by default) still run, each leaving nothing
    # behind, but without the backoff between them (~10 s, then ~20 s of waiting that tests nothing).
    result = llmpipe("run", "--config", str(TINY), "--set", f"project.data_root={tmp_path}",
                     "--set", f"crawl.seeds=['http://127.0.0.1:{unused_port}/']", "--set", "tasks.crawl.retry_delay_s=0")
    assert result.returncode == 1
    assert "[crawl] none of the 1 seed URL(s) gave a page to keep" in result.stderr
    crawl_dir = tmp_path / "crawl"
    # The crawl's resumable work folder (.work-<key>: frontier and WARC files) is kept on
    # purpose for the next attempt to continue from (llm_core.storage.work_dir).
    assert not crawl_dir.exists() or not any(p.is_dir() and not p.name.startswith(".work-") for p in crawl_dir.iterdir()), \
        "a failed stage leaves nothing behind (its lock file and resumable work folder aside)"


def test_a_run_from_the_tokenizer_needs_the_data_built(tmp_path):
    """What the train deployment does on a day the data deployment has not run: a clear error, no crawl."""
    result = llmpipe("run", "--config", str(TINY), "--set", f"project.data_root={tmp_path}", "--from", "tokenizer")
    assert result.returncode == 1
    assert "start_at tokenizer: the crawl output this config needs" in result.stderr
    assert "`llmpipe stage filter`" in result.stderr
    assert not (tmp_path / "crawl").exists() and not (tmp_path / "tokenizer").exists()


def wait_http(url, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not come up in {timeout} s")


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # prefect serve and our ui stop on SIGINT
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_ui_then_serve_runs_the_deployment(site, tmp_path, unused_port):
    prefect_port, mlflow_port = unused_port, unused_port + 1
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api"}
    ui = subprocess.Popen([sys.executable, "-m", "flows.cli", "ui", "--config", str(TINY), "--set",
                           f"project.data_root={tmp_path}", "--prefect-port", str(prefect_port),
                           "--mlflow-port", str(mlflow_port)], cwd=REPO, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    serve = None
    try:
        wait_http(f"http://127.0.0.1:{prefect_port}/api/health")
        wait_http(f"http://127.0.0.1:{mlflow_port}/health")
        # The deployments file as shipped, with its data root moved into the test's directory.
        spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
        spec["deployments"][0]["parameters"]["config"]["project"]["data_root"] = str(tmp_path / "data")
        (tmp_path / "prefect.yaml").write_text(yaml.safe_dump(spec))
        serve_env = {k: v for k, v in env.items() if k not in ("PREFECT_HOME", "PREFECT_LOCAL_STORAGE_PATH")}
        # The served process looks for new runs every second rather than every 10 s (Prefect's default).
        serve_env["PREFECT_RUNNER_POLL_FREQUENCY"] = "1"
        serve = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--file", str(tmp_path / "prefect.yaml")],
                                 cwd=REPO, env=serve_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline, deployments = time.monotonic() + 90, []
        while time.monotonic() < deadline and len(deployments) < 3:  # pipeline, data, train
            deployments = api("POST", f"http://127.0.0.1:{prefect_port}/api/deployments/filter", {})
            time.sleep(1)
        assert sorted(d["name"] for d in deployments) == ["data", "pipeline", "train"]
        (deployment,) = [d for d in deployments if d["name"] == "pipeline"]
        assert deployment["schedules"][0]["schedule"]["cron"] == "0 3 * * *"
        assert deployment["parameters"]["config"]["crawl"]["seeds"] == ["http://127.0.0.1:8765/"]

        # A run started as from the UI, with the form's values changed, is picked up by the served process.
        config = deployment["parameters"]["config"]
        params = {"config": {**config, "crawl": {**config["crawl"], "seeds": [site.url], "max_pages": 5}},
                  "stop_after": "crawl"}
        run = api("POST", f"http://127.0.0.1:{prefect_port}/api/deployments/{deployment['id']}/create_flow_run",
                  {"parameters": params})
        deadline, state = time.monotonic() + 120, None
        while time.monotonic() < deadline and state not in ("COMPLETED", "FAILED", "CRASHED"):
            time.sleep(0.5)
            state = api("GET", f"http://127.0.0.1:{prefect_port}/api/flow_runs/{run['id']}")["state"]["type"]
        assert state == "COMPLETED"
        assert len(list((tmp_path / "data" / "crawl").glob("*/_SUCCESS"))) == 1
        assert any((tmp_path / "data" / "prefect" / "storage").iterdir()), "served runs keep results under the data root"
    finally:
        if serve:
            stop(serve)
        stop(ui)
    assert ui.returncode == 0
    for url in (f"http://127.0.0.1:{prefect_port}/api/health", f"http://127.0.0.1:{mlflow_port}/health"):
        with pytest.raises(httpx.HTTPError):  # Ctrl-C stopped both servers and their workers
            httpx.get(url, timeout=2)


def test_serve_without_a_server_says_how_to_start_one(unused_port):
    result = llmpipe("serve", env={"PREFECT_API_URL": f"http://127.0.0.1:{unused_port}/api"})
    assert result.returncode == 1
    assert "no Prefect server answers" in result.stderr and "llmpipe ui" in result.stderr


def status(*args, capsys):
    """``llmpipe status`` in this process: the same command (tests/test_cli.py runs it as a
    subprocess above), without a second interpreter's start-up only to read a stage's state."""
    from flows.cli import main

    capsys.readouterr()
    assert main(["status", *args]) == 0
    return capsys.readouterr().out


@pytest.mark.slow
def test_a_killed_run_leaves_nothing_trusted_and_the_next_run_completes(site, tmp_path, capsys):
    # 6 pages 0.5 s apart: the crawl still runs for seconds after its build folder appears.
    overrides = ["--set", f"project.data_root={tmp_path}", "--set", f"crawl.seeds=['{site.url}']",
                 "--set", "crawl.max_pages=6", "--set", "crawl.delay_s=0.5"]
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "stage", "crawl", "--config", str(TINY), *overrides],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp_path.glob("crawl/.tmp-*")):
        time.sleep(0.2)
    assert list(tmp_path.glob("crawl/.tmp-*")), "the crawl never started"
    os.killpg(proc.pid, signal.SIGKILL)  # mid-stage, with its Prefect API process: no cleanup code runs
    proc.wait()
    assert not list(tmp_path.glob("crawl/*/_SUCCESS"))
    assert "crawl      missing" in status("--config", str(TINY), *overrides, capsys=capsys)

    result = llmpipe("stage", "crawl", "--config", str(TINY), *overrides)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list(tmp_path.glob("crawl/*/_SUCCESS"))) == 1
    assert not list(tmp_path.glob("crawl/.tmp-*")), "the killed run's partial output is cleaned up"
    assert "crawl      done" in status("--config", str(TINY), *overrides, capsys=capsys)


@pytest.mark.slow
def test_two_cli_runs_of_one_config_at_once_both_succeed_and_build_once(site, tmp_path):
    """A schedule and a CLI run (here: two CLI runs) started together on a new data root: the
    first Prefect and MLflow databases are created once, the crawl is built once."""
    overrides = ["--set", f"project.data_root={tmp_path}", "--set", f"crawl.seeds=['{site.url}']",
                 "--set", "crawl.max_pages=12", "--set", "crawl.delay_s=0.2"]
    runs = [subprocess.Popen([sys.executable, "-m", "flows.cli", "stage", "crawl", "--config", str(TINY), *overrides],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    statuses = [line.split()[1] for out in outputs for line in out.splitlines() if line.strip().startswith("crawl ")]
    # The second waits for the first's lock (reused), or finds Prefect's cache record if it arrived later.
    assert len(statuses) == 2 and statuses.count("ran") == 1, statuses
    assert set(statuses) - {"ran"} <= {"cached", "reused"}, statuses
    assert len(list(tmp_path.glob("crawl/*/_SUCCESS"))) == 1
    assert not list(tmp_path.glob("crawl/.tmp-*"))
