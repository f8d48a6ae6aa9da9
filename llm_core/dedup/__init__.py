"""Dedupe stage: URL, exact (normalised-text hash) and MinHash-LSH near duplicates, in Spark."""

from llm_core.dedup.dedupe import dedupe
from llm_core.dedup.index import INDEX_DIR, index_files
from llm_core.documents import DOCS_DIR
from llm_core.stage import Stage

STAGE = Stage(
    "dedupe", package=__name__, inputs=("crawl",),
    build=lambda config, inputs, out: dedupe(config.dedupe, config.spark, inputs["crawl"].file(DOCS_DIR), out),
    # Signatures reproduce datasketch's permutations (drawn with numpy's random generator)
    # and take its LSH banding optimum.
    libraries=("datasketch", "numpy"),
    input_files=index_files,
    tables=("passes", "cluster_sizes"),
)

__all__ = ["INDEX_DIR", "STAGE", "dedupe"]
