"""A green CI means the end-to-end tests ran: without the real data, CI fails instead of skipping."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_data_test(tmp_path, ci: str):
    env = {**os.environ, "CI": ci, "LLMPIPE_SHARED_DATA": str(tmp_path / "absent")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_tokenizer.py", "-x"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_missing_shared_data_fails_under_ci_and_skips_elsewhere(tmp_path):
    under_ci = run_data_test(tmp_path, "true")
    assert under_ci.returncode != 0
    assert "CI must run the tests on real data" in under_ci.stdout
    locally = run_data_test(tmp_path, "")
    assert locally.returncode == 0, locally.stdout[-2000:]
    assert "skipped" in locally.stdout
