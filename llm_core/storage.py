"""Content-addressed stage outputs.

A stage's output lives at ``<data_root>/<stage>/<key>/`` where ``key`` hashes the stage's
config, the keys of its inputs and the stage's code version (as Marin's executor does).
The stage writes into a temporary sibling directory; only when it returns are
``stats.json`` and ``_SUCCESS`` written and the directory renamed into place, in one atomic
step, so no reader ever sees a final directory without its marker. A
crash leaves at most a ``.tmp-*`` directory, which no later run trusts or reads. One
process at a time builds a given output (a lock file beside it, llm_core.locks).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict

from llm_core.locks import output_lock

log = logging.getLogger(__name__)

SUCCESS_MARKER = "_SUCCESS"
STATS_FILE = "stats.json"


class StageOutput(BaseModel):
    """What one stage hands the next: where its output is and what it measured.

    Small and JSON-serialisable, so Prefect persists it as the task result and hashes it
    as the next task's input; the data itself never passes through Prefect."""

    model_config = ConfigDict(frozen=True)

    stage: str
    key: str
    path: Path
    stats: dict[str, Any]
    # True when the output already existed and this call did no work.
    reused: bool = False
    # Its address on an object store (llm_core.objectstore); ``path`` is then the local copy.
    url: str | None = None

    @property
    def location(self) -> str:
        """Where the output lives for a user: its object-store URL, else its path."""
        return self.url or str(self.path)

    def file(self, *parts: str) -> Path:
        return self.path.joinpath(*parts)


def stage_key(stage: str, config: BaseModel | dict[str, Any], input_keys: list[str], code: str | dict[str, Any]) -> str:
    """Hash of everything that determines a stage's output: its config, its inputs' keys and
    its code (the fingerprint of llm_core.fingerprint, or a plain version string)."""
    cfg = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    payload = json.dumps(
        {"stage": stage, "config": cfg, "inputs": list(input_keys), "code": code},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def output_dir(data_root: Path, stage: str, key: str) -> Path:
    return Path(data_root) / stage / key


def is_complete(path: Path) -> bool:
    return (path / SUCCESS_MARKER).is_file() and (path / STATS_FILE).is_file()


def load_output(stage: str, key: str, path: Path, reused: bool = False) -> StageOutput:
    stats = json.loads((path / STATS_FILE).read_text())
    return StageOutput(stage=stage, key=key, path=path.resolve(), stats=stats, reused=reused)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


TMP_PREFIX = ".tmp-"


def tmp_dir_name(key: str) -> str:
    """``.tmp-<key>-<host>-<pid>-<random>``: who is building, so leftovers can be told from live builds."""
    return f"{TMP_PREFIX}{key}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def tmp_dir_owner(name: str) -> tuple[str, str, int | None] | None:
    """(key, host, pid) of a :func:`tmp_dir_name`, or None if ``name`` is not one (hosts may contain dashes)."""
    if not name.startswith(TMP_PREFIX):
        return None
    key, _, rest = name[len(TMP_PREFIX):].partition("-")
    host_and_pid, _, _random = rest.rpartition("-")
    host, _, pid = host_and_pid.rpartition("-")
    return key, host, int(pid) if pid.isdigit() else None


WORK_PREFIX = ".work-"


def work_dir(build_dir: Path) -> Path:
    """A folder where a build may keep state that must outlive its own attempt (a crawl's
    frontier and WARC files): ``<stage>/.work-<key>/``, beside the temporary build folder
    ``build_dir``. A killed or failed build leaves it for the next attempt to continue from;
    it is removed once the output is in place. Only the holder of the output's lock uses it."""
    owner = tmp_dir_owner(Path(build_dir).name)
    if owner is None:
        raise ValueError(f"{build_dir} is not a build folder made by materialize()")
    return Path(build_dir).parent / f"{WORK_PREFIX}{owner[0]}"


def abandoned_here(name: str, key: str) -> bool:
    """Whether ``name`` is a :func:`tmp_dir_name` of output ``key`` made by a process of this
    host that has died (another host's processes cannot be asked)."""
    owner = tmp_dir_owner(name) if name.startswith(f"{TMP_PREFIX}{key}-") else None
    return bool(owner) and owner[1] == socket.gethostname() and owner[2] is not None and not process_alive(owner[2])


def remove_abandoned_tmp_dirs(stage_dir: Path, key: str) -> None:
    """Delete ``.tmp-<key>-<this host>-<pid>-*`` left by processes of this host that have died."""
    for tmp in stage_dir.glob(f"{TMP_PREFIX}{key}-*"):
        if abandoned_here(tmp.name, key):
            log.info("removing %s, left by a process that died", tmp)
            shutil.rmtree(tmp, ignore_errors=True)


def materialize(
    data_root: Path,
    stage: str,
    config: BaseModel,
    inputs: list[StageOutput],
    code: str | dict[str, Any],
    build: Callable[[Path], dict[str, Any]],
) -> StageOutput:
    """Return the stage's output, building it with ``build(tmp_dir) -> stats`` only if absent.

    ``build`` writes its files into the directory it is given and returns the stage's
    stats (JSON-serialisable). If it raises, its partial output is deleted and the error
    propagates; nothing is left at the final path. Concurrent calls for one output build it
    once: the others wait on its lock (llm_core.locks) and reuse it. A complete output is
    never removed.
    """
    key = stage_key(stage, config, [i.key for i in inputs], code)
    final = output_dir(data_root, stage, key)
    if is_complete(final):
        log.info("%s: output %s exists, nothing to do", stage, final)
        return load_output(stage, key, final, reused=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(final):
        if is_complete(final):  # another run built it while we waited for the lock
            log.info("%s: output %s was built by another run, reusing it", stage, final)
            return load_output(stage, key, final, reused=True)
        if final.exists():  # a directory without a marker is debris from an older crash: never trusted
            shutil.rmtree(final)
        remove_abandoned_tmp_dirs(final.parent, key)
        log.info("%s: building %s", stage, final)
        return _build_into_place(stage, key, final, inputs, code, build)


def _build_into_place(stage: str, key: str, final: Path, inputs: list[StageOutput], code: str | dict[str, Any],
                      build: Callable[[Path], dict[str, Any]]) -> StageOutput:
    """Build in a temporary sibling, add ``stats.json`` and ``_SUCCESS``, rename into place in one step."""
    tmp = final.parent / tmp_dir_name(key)
    tmp.mkdir()
    started = time.perf_counter()
    try:
        stats = dict(build(tmp))
        stats.setdefault("wall_s", round(time.perf_counter() - started, 3))
        stats["key"] = key
        stats["inputs"] = {i.stage: i.key for i in inputs}
        stats["code"] = code
        (tmp / STATS_FILE).write_text(json.dumps(stats, indent=2, sort_keys=True, default=str))
        (tmp / SUCCESS_MARKER).write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        try:
            tmp.rename(final)
            shutil.rmtree(final.parent / f"{WORK_PREFIX}{key}", ignore_errors=True)
        except OSError:
            # Only a builder that ignored the lock (a filesystem without flock) gets here.
            if is_complete(final):
                shutil.rmtree(tmp, ignore_errors=True)
                return load_output(stage, key, final, reused=True)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_output(stage, key, final)
