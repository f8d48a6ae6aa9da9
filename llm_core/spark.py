"""The one place a SparkSession is made: one per process, reused by every Spark stage."""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import suppress

from pydantic import Field

from llm_core.errors import StageError
from llm_core.fingerprint import package_digest
from llm_core.section import Section

_DEFAULTS = {
    # Small data on a laptop: 200 shuffle partitions would be 200 tiny tasks.
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Spark's console progress bar redraws one line with \r, which garbles the task logs.
    "spark.ui.showConsoleProgress": "false",
}


class SparkConfig(Section):
    """Engine settings (``spark:``): they change where the filter runs, never what it
    outputs, so they are not part of any stage's output key."""

    master: str = "local[*]"
    app_name: str = "llmpipe"
    conf: dict[str, str] = Field(default_factory=dict)


def get_spark(config: SparkConfig):
    """Get (or create) the process's SparkSession for ``config.master``.

    Python workers run the interpreter that runs us, so on ``local[*]`` they see the same
    packages (fastText model included); on a cluster the workers need the project installed.
    """
    from pyspark.sql import SparkSession  # imported here: starting the JVM is not free

    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        raise StageError("filter", "Spark needs Java 17 or newer: put `java` on PATH or set JAVA_HOME "
                         "(e.g. apt-get install openjdk-17-jre-headless)")
    if config.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    forget_dead_session()
    builder = SparkSession.builder.master(config.master).appName(config.app_name)
    for key, value in {**_DEFAULTS, **config.conf}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    check_executor_code(spark)
    return spark


_CHECKED_APPLICATIONS: set[str] = set()


def check_executor_code(spark, expected: str | None = None) -> None:
    """On a cluster, refuse executors whose ``llm_core`` is not the driver's (once per application).

    A stage's key hashes the driver's code; an executor with another version installed (an
    older worker image) would write that version's output under this key, silently. One
    small job asks every executor slot for its code digest (``package_digest``); ``local``
    masters run this very interpreter and are not asked."""
    import socket

    context = spark.sparkContext
    if context.master.startswith("local") or context.applicationId in _CHECKED_APPLICATIONS:
        return
    expected = expected or package_digest()

    def executor_code(_: int) -> tuple[str, str]:  # pickled by value: runs where llm_core may be absent
        import socket

        try:
            from llm_core.fingerprint import package_digest
        except ImportError as exc:
            return socket.gethostname(), f"none ({exc})"
        return socket.gethostname(), package_digest()

    slots = max(context.defaultParallelism, 1)
    found = set(context.parallelize(range(slots), slots).map(executor_code).collect())
    wrong = sorted((host, digest) for host, digest in found if digest != expected)
    if wrong:
        shown = ", ".join(f"{host}: {digest}" for host, digest in wrong)
        raise StageError("spark", f"the Spark executors run other llm_core code than this driver ({socket.gethostname()}: "
                         f"{expected}); {shown}. Install the same llmpipe version on every Spark worker")
    _CHECKED_APPLICATIONS.add(context.applicationId)


def forget_dead_session() -> None:
    """Drop this process's SparkSession if its JVM is gone (killed, out of memory) or its
    context was stopped.

    ``getOrCreate`` would hand back the dead session, so a retried filter task in the same
    process would fail the same way; with the session forgotten, the retry starts a new JVM."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    session = SparkSession._instantiatedSession
    if session is None:
        return
    try:
        if not session.sparkContext._jsc.sc().isStopped():
            return  # the JVM answers and its context runs
    except Exception:  # noqa: BLE001 (Py4JError, ConnectionError...: whatever a dead gateway raises)
        pass
    with suppress(Exception):
        session.stop()
    SparkSession._instantiatedSession = None
    SparkSession._activeSession = None
    SparkContext._active_spark_context = None
    SparkContext._gateway = None
    SparkContext._jvm = None
