"""A service that is down is named, with the setting that points at it, before any stage runs."""

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import free_port
from llm_core.config import PipelineConfig
from llm_core.errors import PipelineError
from llm_core.preflight import check_services, problems

LLMPIPE = str(Path(sys.executable).with_name("llmpipe"))
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def healthy():
    """An HTTP server on 127.0.0.1 answering 200 on /health and /api/health, as MLflow and Prefect do."""
    class Health(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            self.send_response(200 if self.path.endswith("/health") else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_embedded_defaults_need_nothing():
    assert problems(PipelineConfig()) == []


def test_every_service_down_is_named_with_its_setting(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    down = free_port()
    config = PipelineConfig.model_validate({
        "project": {"mlflow_tracking_uri": f"http://user:s3cret@127.0.0.1:{down}"},
        "spark": {"master": f"spark://127.0.0.1:{down}"}})
    with pytest.raises(PipelineError) as error:
        check_services(config, prefect_api=f"http://127.0.0.1:{down}/api")
    message = str(error.value)
    assert f"MLflow tracking server at http://user:***@127.0.0.1:{down}/health (project.mlflow_tracking_uri)" in message
    assert f"Spark master at spark://127.0.0.1:{down} (spark.master) is not reachable" in message
    assert "Prefect server" in message and "$PREFECT_API_URL" in message
    assert "s3cret" not in message, "credentials in a URI are not repeated"


def test_running_services_pass(healthy, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", healthy)
    assert problems(PipelineConfig(), prefect_api=f"{healthy}/api") == []


def test_the_cli_stops_before_any_stage(tmp_path):
    down = free_port()
    done = subprocess.run([LLMPIPE, "run", "--config", "configs/tiny.yaml",
                           "--set", f"project.data_root={tmp_path / 'data'}",
                           "--set", f"project.mlflow_tracking_uri=http://127.0.0.1:{down}"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "MLflow tracking server" in done.stderr and "nothing was run" in done.stderr
    assert not (tmp_path / "data" / "crawl").exists()
