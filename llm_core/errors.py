"""The errors a user sees, and which failures are worth a retry."""

from __future__ import annotations

import sys


class PipelineError(Exception):
    """Base of the errors that stop the pipeline with a message for the user."""


class ConfigError(PipelineError):
    """The configuration is invalid; raised before any stage runs."""


class StageError(PipelineError):
    """A stage cannot produce its output from its inputs (no seeds reachable, empty corpus...).

    ``retryable`` says whether running the stage again may succeed (a killed training
    process) or not (an empty corpus): the orchestrator retries only the former."""

    def __init__(self, stage: str, message: str, retryable: bool = False):
        super().__init__(f"[{stage}] {message}")
        self.stage = stage
        self.retryable = retryable


# Messages of Spark / Py4J failures that come from the cluster, not from our code.
SPARK_TRANSIENT_MARKERS = (
    "ExecutorLostFailure", "FetchFailed", "Executor heartbeat timed out", "Lost executor",
    "Connection reset by peer", "Connection refused", "Python worker exited unexpectedly (crashed)",
)


def is_transient(exc: BaseException) -> bool:
    """Whether running the stage again may succeed: the network, a lost Spark executor or JVM,
    a killed worker (a ``StageError`` says so itself). A Python error in our code (a
    ``KeyError``, a ``TypeError``...) would only happen again: it is not transient.

    Exception types of optional engines are matched only when their module is loaded, so
    this library imports none of them."""
    if isinstance(exc, PipelineError):
        return bool(getattr(exc, "retryable", False))
    if isinstance(exc, (ConnectionError, TimeoutError)):  # sockets: refused, reset, timed out
        return True
    httpx = sys.modules.get("httpx")
    if httpx is not None and isinstance(exc, httpx.TransportError):
        return True
    py4j_protocol = sys.modules.get("py4j.protocol")
    if py4j_protocol is not None and isinstance(exc, py4j_protocol.Py4JNetworkError):
        return True
    module = type(exc).__module__ or ""
    if module.startswith(("pyspark", "py4j")):
        return any(marker in str(exc) for marker in SPARK_TRANSIENT_MARKERS)
    return False
