"""The process environment a command sets before Prefect is imported.

Prefect reads its settings when first imported, so the CLI calls this first: Prefect's
home (its ephemeral API database) under the data root rather than ``~/.prefect``. The flow
itself sets up what a run needs (results under the data root, log forwarding: see
flows/pipeline.py), so a run started by a worker, which never comes through here, behaves
the same.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from filelock import FileLock

from llm_core.config import PipelineConfig, resolve_data_root


def setup_environment(config: PipelineConfig) -> None:
    """Keep Prefect's state under the data root unless the user chose a place."""
    data_root = resolve_data_root(config.project.local_dir)
    (data_root / "prefect").mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(data_root / "prefect"))
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(data_root / "prefect" / "storage"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The ephemeral API's first start can take ~20 s on a busy 2-core machine (Prefect's default limit).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # llm_core also logs outside flow runs (a stage called directly); that is not an error.
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def prepare_ephemeral_api() -> None:
    """Create or migrate the ephemeral Prefect API's database once, under a file lock.

    Without a server (no ``PREFECT_API_URL``) each ``llmpipe`` process starts its own API on
    the SQLite database under the data root and migrates it at start; two first runs
    started together (a schedule and a CLI run) would migrate it at the same time and one
    would crash. Done here first, under a lock, the servers' own migration finds nothing to do."""
    if os.environ.get("PREFECT_API_URL"):
        return
    from prefect.server.database import provide_database_interface
    from prefect.settings import PREFECT_HOME

    home = Path(PREFECT_HOME.value())
    home.mkdir(parents=True, exist_ok=True)
    with FileLock(home / ".database-init.lock"):
        asyncio.run(provide_database_interface().create_db())
