"""What a dedupe output remembers of the documents it accepted, for later runs.

A weekly crawl must not re-admit last week's pages. So each dedupe output keeps, beside
``docs/``, an ``index/`` of its accepted documents: ``id``, the normalised URL
(``url_key``), the SHA-256 of the normal form (``hash``), the MinHash signature (``sig``)
and its band keys (``bands``); and ``index/_settings.json``, the settings those values
depend on. A later run names earlier outputs in ``dedupe.against``; their index rows join
this run's passes as documents that always win their group and are never written out,
so a new document that repeats an old one is rejected with ``dup_of`` = the old id.

Only compatible values can be compared: a signature drawn with other permutations or
shingles means nothing against ours, so differing settings are a configuration error,
not a silent miss.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llm_core.dedup.config import DedupeConfig
from llm_core.dedup.near import ROW
from llm_core.documents import DOCS_DIR
from llm_core.errors import ConfigError

INDEX_DIR = "index"
SETTINGS_FILE = "_settings.json"  # "_": Spark skips it when reading the Parquet parts
# The settings each kind of stored value depends on.
_EXACT_SETTINGS = ("nfkc",)
_NEAR_SETTINGS = ("nfkc", "num_perm", "seed", "scheme", "shingle_hash", "shingle", "shingle_size", "bands", "rows")


def settings(config: DedupeConfig, bands: int, rows: int) -> dict[str, Any]:
    """The settings an index's values were computed with."""
    return {"near": config.near, "nfkc": config.nfkc, "num_perm": config.num_perm, "seed": config.seed,
            "scheme": config.scheme, "shingle_hash": config.shingle_hash, "shingle": config.shingle, "shingle_size": config.shingle_size,
            "bands": bands, "rows": rows}


def index_files(config: DedupeConfig) -> list[Path]:
    """The index folders of the earlier outputs named in ``against`` (their content enters
    this stage's key: a rebuilt earlier output changes what this one rejects)."""
    return [Path(path) / INDEX_DIR for path in config.against]


def write_index(kept: Any, out_dir: Path, config: DedupeConfig, bands: int, rows: int) -> None:
    """``kept``: (``id``, ``url_key``, ``hash``, ``sig``, ``bands``) of the accepted documents."""
    kept.write.parquet(str(out_dir / INDEX_DIR))
    (out_dir / INDEX_DIR / SETTINGS_FILE).write_text(json.dumps(settings(config, bands, rows), indent=1) + "\n")


def _check(path: Path, saved: dict[str, Any], wanted: dict[str, Any], config: DedupeConfig) -> None:
    names = set(_EXACT_SETTINGS if config.exact else ())
    if config.near:
        if not saved.get("near"):
            raise ConfigError(f"dedupe.against: {path} was built with near: false, so it has no signatures "
                              "to compare near duplicates with; rebuild it with near: true or set near: false")
        names |= set(_NEAR_SETTINGS)
    differ = sorted(n for n in names if saved.get(n) != wanted[n])
    if differ:
        detail = ", ".join(f"{n}: {saved.get(n)!r} there, {wanted[n]!r} here" for n in differ)
        raise ConfigError(f"dedupe.against: {path} was deduplicated with other settings ({detail}); "
                          "its hashes and signatures cannot be compared with this run's")


def read_earlier(spark: Any, config: DedupeConfig, bands: int, rows: int) -> Any | None:
    """The index rows of every output in ``against`` as one DataFrame shaped like this run's
    documents: ``_row`` negative (so they sort first and are told apart), ``id``,
    ``url_key``, ``hash``, ``sig``, ``bands``, ``fetched_at`` (null) and ``text`` (read from
    the earlier ``docs/`` only when ``verify_exact`` needs it, else null). None if no
    earlier output is named."""
    from pyspark.sql import functions as F

    if not config.against:
        return None
    wanted = settings(config, bands, rows)
    frames = []
    for path in map(Path, config.against):
        settings_file = path / INDEX_DIR / SETTINGS_FILE
        if not settings_file.is_file():
            raise ConfigError(f"dedupe.against: {path} is not a dedupe output with an index "
                              f"(no {INDEX_DIR}/{SETTINGS_FILE}); name the folder of a dedupe output")
        _check(path, json.loads(settings_file.read_text()), wanted, config)
        frame = spark.read.parquet(str(path / INDEX_DIR))
        if config.verify_exact:
            texts = spark.read.parquet(str(path / DOCS_DIR)).select("id", "text")
            frame = frame.join(texts, "id", "left")
        else:
            frame = frame.withColumn("text", F.lit(None).cast("string"))
        frames.append(frame.select("id", "url_key", "hash", "sig", "bands", "text"))
    earlier = frames[0]
    for more in frames[1:]:
        earlier = earlier.unionByName(more)
    return (earlier.withColumn(ROW, -1 - F.monotonically_increasing_id())
            .withColumn("fetched_at", F.lit(None).cast("timestamp")))
