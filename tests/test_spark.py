"""A Spark JVM lost mid-run is a transient failure, and the retry gets a new JVM."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

KILL_THE_JVM = """
import os, signal, time
from llm_core.errors import is_transient
from llm_core.spark import SparkConfig, get_spark

config = SparkConfig(master="local[1]", conf={"spark.ui.enabled": "false"})
spark = get_spark(config)
assert spark.range(10).count() == 10
os.kill(spark.sparkContext._gateway.proc.pid, signal.SIGKILL)  # the executor JVM dies (OOM killer, lost node)
time.sleep(1)
try:
    spark.range(10).count()
except Exception as exc:
    assert is_transient(exc), repr(exc)
else:
    raise AssertionError("the dead JVM answered")
again = get_spark(config)  # what a retried task does
assert again.range(5).count() == 5
print("recovered")
"""


def test_a_lost_jvm_is_retried_with_a_new_one():
    result = subprocess.run([sys.executable, "-c", KILL_THE_JVM], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "recovered" in result.stdout
