"""What a stage is: a named step that owns its config section, inputs, code and files.

Each stage package declares its own ``STAGE`` row (``llm_core/crawl/__init__.py``...):
the flow, ``llmpipe status`` and tracking read these rows and never name a stage's files
themselves. The output key of a stage is computed here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pydantic import BaseModel

from llm_core.errors import ConfigError
from llm_core.fingerprint import code_fingerprint, file_digest
from llm_core.storage import StageOutput, stage_key

if TYPE_CHECKING:
    from llm_core.config import PipelineConfig

Inputs = dict[str, StageOutput]
Build = Callable[["PipelineConfig", Inputs, Path], dict[str, Any]]


@dataclass(frozen=True)
class Stage:
    name: str  # also the config section and the output folder
    package: str  # the llm_core package that builds it: the root of its code fingerprint
    inputs: tuple[str, ...]
    build: Build
    # Bump by hand to force a rebuild that the fingerprint cannot see (e.g. a changed remote API).
    code_version: str = "1"
    # Distributions whose version shapes the output (their version enters the key).
    libraries: tuple[str, ...] = ()
    # Data files read by the build (name -> path), hashed into the key; a function, resolved lazily.
    data_files: Callable[[], dict[str, Path]] | None = None
    # Files the stage's config names (training references...): their content enters the key.
    input_files: Callable[[Any], list[Path]] | None = None
    # Files of the output worth logging to MLflow beside stats.json.
    artifacts: tuple[str, ...] = ()
    # Tables in stats.json (name -> list of row dicts) worth showing as Prefect table artifacts.
    tables: tuple[str, ...] = ()
    # A JSON-lines file of ``{"step": n, metric: value...}`` records: logged as metric curves.
    history_file: str | None = None
    # A markdown file of the output shown to a reviewer as a Prefect markdown artifact.
    report: str | None = None

    def config(self, config: "PipelineConfig") -> BaseModel:
        return getattr(config, self.name)

    def fingerprint(self) -> dict[str, Any]:
        """The code this stage's output depends on (see llm_core.fingerprint); computed once per process."""
        return _fingerprint(self)

    def code(self, config: "PipelineConfig") -> dict[str, Any]:
        """The fingerprint, plus the digests of the files this config names (if any)."""
        files = self.input_files(self.config(config)) if self.input_files else []
        if not files:
            return self.fingerprint()
        return {**self.fingerprint(), "input_files": {str(p): path_digest(p) for p in files}}

    def key(self, config: "PipelineConfig", input_keys: dict[str, str]) -> str:
        return stage_key(self.name, self.config(config), [input_keys[i] for i in self.inputs], self.code(config))


def path_digest(path: Path) -> str:
    """Digest of a file, or of every file under a folder (names and contents); a missing
    path is an error here, before anything runs, rather than half way through a build."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return stage_key("files", {}, [f"{p.relative_to(path)}:{file_digest(p)}" for p in files], "")
    raise ConfigError(f"{path} (named in the config) does not exist")


@lru_cache(maxsize=None)
def _fingerprint(stage: Stage) -> dict[str, Any]:
    return code_fingerprint(stage.package, stage.code_version, stage.libraries, stage.data_files)
