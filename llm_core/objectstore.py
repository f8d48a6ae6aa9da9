"""Stage outputs on an object store (``project.data_root: s3://bucket/prefix``, or any fsspec URL).

An object store has no atomic rename, so the local rule (build in a temporary folder, rename
it into place) cannot be used there. The commit rule of Marin and datatrove is used instead:
an output is uploaded under a temporary prefix, copied server-side to its address, and
trusted only once its ``_SUCCESS`` marker, written last, is there. A reader that finds no
marker treats whatever lies at the address as debris: the next publisher removes it first.

Stages read and write local files (Spark, tokenizers, DeepSpeed checkpoints), so each output
is built in, or fetched into, a local copy under ``project.local_root`` and published from
there; a copy is reused while it is complete. On a Spark cluster of several machines that
local root must be a filesystem the executors share: Spark's own ``s3a://`` access needs the
``hadoop-aws`` and AWS SDK jars, which the pyspark wheel does not ship.

fsspec (s3fs for ``s3://``) rather than boto3 calls of our own: one API for every store
(S3, MinIO, GCS, Azure), multipart uploads and server-side copies handled.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Callable

import fsspec
from pydantic import BaseModel

from llm_core.locks import output_lock
from llm_core.storage import (
    STATS_FILE, SUCCESS_MARKER, StageOutput, abandoned_here, is_complete, load_output, materialize, output_dir,
    stage_key, tmp_dir_name,
)

log = logging.getLogger(__name__)


def is_url(root: str | Path) -> bool:
    """Whether a data root names an object store (``s3://...``) rather than a local or shared path."""
    return isinstance(root, str) and "://" in root and not root.startswith("file://")


class ObjectStore:
    """The outputs under one object-store URL: ``<url>/<stage>/<key>/``."""

    def __init__(self, url: str, options: dict[str, Any] | None = None):
        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **(options or {}))

    def address(self, stage: str, key: str) -> str:
        """The output's URL (what a user sees in ``llmpipe status`` and MLflow)."""
        return f"{self.url}/{stage}/{key}"

    def _path(self, stage: str, key: str) -> str:
        return f"{self.root}/{stage}/{key}"

    def is_complete(self, stage: str, key: str) -> bool:
        self.fs.invalidate_cache()  # another machine may have published it since we last looked
        path = self._path(stage, key)
        return self.fs.exists(f"{path}/{SUCCESS_MARKER}") and self.fs.exists(f"{path}/{STATS_FILE}")

    def check(self) -> None:
        """Raise if the store cannot be listed (no such bucket, no credentials, no server)."""
        self.fs.ls(self.root.split("/")[0], detail=False)

    def publish(self, local: Path, stage: str, key: str) -> None:
        """Put a complete local output at its address, marker last (see the module docstring).

        Another publisher that got there first wins: its output is kept and ours dropped (the
        two are the same output, by key)."""
        if self.is_complete(stage, key):
            return
        final = self._path(stage, key)
        self._remove_abandoned_staging(stage, key)
        staging = f"{self.root}/{stage}/{tmp_dir_name(key)}"
        marker = local / SUCCESS_MARKER  # the output's own; Spark's inside its folders are data like any other
        files = sorted(p for p in local.rglob("*") if p.is_file() and p != marker)
        try:
            for path in files:
                self.fs.put_file(str(path), f"{staging}/{path.relative_to(local).as_posix()}")
            if self.is_complete(stage, key):
                return
            if self.fs.exists(final):  # an unmarked address: an earlier publisher died before its marker
                log.info("removing %s, left without its %s marker", self.address(stage, key), SUCCESS_MARKER)
                self.fs.rm(final, recursive=True)
            for path in files:
                name = path.relative_to(local).as_posix()
                self.fs.copy(f"{staging}/{name}", f"{final}/{name}")
            self.fs.pipe_file(f"{final}/{SUCCESS_MARKER}", marker.read_bytes())
            log.info("%s: published %s", stage, self.address(stage, key))
        finally:
            if self.fs.exists(staging):
                self.fs.rm(staging, recursive=True)

    def _remove_abandoned_staging(self, stage: str, key: str) -> None:
        """Delete the temporary prefixes of this output left by publishers of this host that
        have died (as :func:`llm_core.storage.remove_abandoned_tmp_dirs` does locally); other
        hosts' are left to the store's lifecycle rules."""
        stage_dir = f"{self.root}/{stage}"
        for path in self.fs.ls(stage_dir, detail=False) if self.fs.exists(stage_dir) else []:
            name = path.rstrip("/").rsplit("/", 1)[-1]
            if abandoned_here(name, key):
                log.info("removing %s, left by a publisher that died", f"{self.url}/{stage}/{name}")
                self.fs.rm(path, recursive=True)

    def fetch(self, stage: str, key: str, local_root: Path) -> Path:
        """A local copy of a complete output (downloaded once, into place by rename, like a build)."""
        local = output_dir(local_root, stage, key)
        if is_complete(local):
            return local
        local.parent.mkdir(parents=True, exist_ok=True)
        with output_lock(local):
            if is_complete(local):
                return local
            if local.exists():
                shutil.rmtree(local)
            tmp = local.parent / tmp_dir_name(key)
            try:
                source = self._path(stage, key)
                for remote in sorted(self.fs.find(source)):
                    target = tmp / remote[len(source) + 1:]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self.fs.get_file(remote, str(target))
                if not is_complete(tmp):
                    raise FileNotFoundError(f"{self.address(stage, key)} lost its {SUCCESS_MARKER} marker while "
                                            "being read")
                tmp.rename(local)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        log.info("%s: fetched %s into %s", stage, self.address(stage, key), local)
        return local

    def materialize(self, local_root: Path, stage: str, config: BaseModel, inputs: list[StageOutput],
                    code: str | dict[str, Any], build: Callable[[Path], dict[str, Any]]) -> StageOutput:
        """:func:`llm_core.storage.materialize` for an object store: an output already at its
        address is fetched (a local copy) and reused; otherwise it is built locally and published."""
        key = stage_key(stage, config, [i.key for i in inputs], code)
        if self.is_complete(stage, key):
            log.info("%s: output %s exists, nothing to do", stage, self.address(stage, key))
            output = load_output(stage, key, self.fetch(stage, key, local_root), reused=True)
        else:
            output = materialize(local_root, stage, config, inputs, code, build)
            self.publish(output.path, stage, key)
        return output.model_copy(update={"url": self.address(stage, key)})
