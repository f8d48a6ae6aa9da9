"""docker/: the compose file names every service of the scale-out topology, publishes ports on
127.0.0.1 only and takes every credential from the environment; the image installs the pinned
torch from a chosen index. No Docker engine (nor the compose plugin) runs here, so the files are
checked as YAML and text; `docker compose config` validates them where it is available."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"
SERVICES = {"postgres", "s3", "s3-init", "mlflow", "prefect-server", "prefect-worker", "spark-master", "spark-worker"}
PUBLISHED = {"prefect-server": "4200", "mlflow": "5000", "spark-master": "8080", "s3": "9001"}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_every_service_of_the_topology_is_there(compose):
    services = compose["services"]
    assert set(services) == SERVICES
    project_image = {name for name, s in services.items() if s.get("build", {}).get("dockerfile") == "docker/Dockerfile"}
    assert project_image == {"mlflow", "prefect-server", "prefect-worker", "spark-master", "spark-worker"}
    assert "postgresql+psycopg2://" in services["mlflow"]["command"] and "s3://mlflow" in services["mlflow"]["command"]
    assert services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith(
        "postgresql+asyncpg://")
    worker = services["prefect-worker"]
    assert "prefect worker start --pool llmpipe-process" in worker["command"]
    assert worker["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "spark://spark-master:7077" in services["spark-worker"]["command"]
    assert {"data:/data"} <= set(worker["volumes"]) & set(services["spark-worker"]["volumes"]), "one shared data root"
    assert set(compose["volumes"]) == {"pgdata", "s3data", "data"}


def test_ports_are_published_on_loopback_only(compose):
    published = {name: s["ports"] for name, s in compose["services"].items() if s.get("ports")}
    assert {name: [p.split(":")[1] for p in ports] for name, ports in published.items()} == \
        {name: [port] for name, port in PUBLISHED.items()}
    assert all(p.startswith("127.0.0.1:") for ports in published.values() for p in ports)


def test_credentials_come_from_the_environment_only():
    text = (DOCKER / "compose.yaml").read_text()
    for line in text.splitlines():
        if re.search(r"(PASSWORD|SECRET|ACCESS_KEY)\w*:\s*\S", line):
            assert "${" in line, f"a literal credential: {line.strip()}"
    assert "docker/.env" in (DOCKER.parent / ".gitignore").read_text().splitlines()
    example = (DOCKER / "env.example").read_text()
    assert all(re.fullmatch(r"\w+=", line) for line in example.splitlines() if line and not line.startswith("#"))


def test_the_image_pins_torch_and_runs_without_root():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "ARG BASE=" in dockerfile and "ARG TORCH_INDEX_URL=" in dockerfile
    assert '"torch==2.13.0"' in dockerfile and 'pip install -e ".[servers]"' in dockerfile
    assert "USER llmpipe" in dockerfile and "openjdk-17" in dockerfile


@pytest.mark.skipif(shutil.which("docker") is None or subprocess.run(
    ["docker", "compose", "version"], capture_output=True).returncode != 0, reason="no docker compose plugin here")
def test_docker_compose_accepts_the_file(tmp_path):
    env = tmp_path / ".env"
    env.write_text("POSTGRES_PASSWORD=x\nS3_ACCESS_KEY_ID=x\nS3_SECRET_ACCESS_KEY=x\n")
    done = subprocess.run(["docker", "compose", "-f", str(DOCKER / "compose.yaml"), "--env-file", str(env), "config",
                           "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
