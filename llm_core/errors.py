"""The errors a user sees: each says which stage (or the config) and what to do."""


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
