"""Dedupe stage: exact duplicates by normalised-text hash, near-duplicates by MinHash-LSH."""

from llm_core.dedup.dedupe import dedupe
from llm_core.documents import DOCS_DIR
from llm_core.stage import Stage

STAGE = Stage(
    "dedupe", package=__name__, inputs=("crawl",),
    build=lambda config, inputs, out: dedupe(config.dedupe, config.spark, inputs["crawl"].file(DOCS_DIR), out),
    # datasketch draws its MinHash permutations with numpy's random generator.
    libraries=("datasketch", "numpy"),
)

__all__ = ["STAGE", "dedupe"]
