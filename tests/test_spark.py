"""A Spark JVM lost mid-run is a transient failure, and the retry gets a new JVM; executors
with other llm_core code than the driver's are refused."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


CHECK_THE_EXECUTORS = """
import sys
from llm_core.errors import StageError
from llm_core.spark import _CHECKED_APPLICATIONS, SparkConfig, check_executor_code, get_spark
spark = get_spark(SparkConfig(master=sys.argv[1], conf={"spark.ui.enabled": "false", "spark.driver.host": "127.0.0.1",
                                                       "spark.executor.memory": "1g"}))
assert spark.sparkContext.applicationId in _CHECKED_APPLICATIONS, "the same code passed"
_CHECKED_APPLICATIONS.clear()
try:
    check_executor_code(spark, expected="driver-digest")  # as if the driver ran other code
except StageError as error:
    print(error)
else:
    sys.exit("no error")
"""


@pytest.mark.slow
def test_executors_with_other_code_are_refused(spark_standalone):
    from llm_core.fingerprint import package_digest

    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    done = subprocess.run([sys.executable, "-c", CHECK_THE_EXECUTORS, spark_standalone], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "[spark] the Spark executors run other llm_core code than this driver" in done.stdout
    assert "driver-digest); " in done.stdout and f": {package_digest()}" in done.stdout, done.stdout
    assert "Install the same llmpipe version on every Spark worker" in done.stdout
