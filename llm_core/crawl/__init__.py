"""Crawl stage: collect documents from a polite live crawl, WARC files and local corpora."""

from llm_core.crawl.collect import WARC_DIR, collect
from llm_core.stage import Stage

STAGE = Stage(
    "crawl", package=__name__, inputs=(),
    build=lambda config, inputs, out: collect(config, out),
    # trafilatura's own extraction helpers (justext, htmldate, charset-normalizer) shape the text too.
    libraries=("trafilatura", "justext", "htmldate", "charset-normalizer", "courlan", "protego", "warcio", "httpx",
               "lxml", "fastwarc"),
)

__all__ = ["STAGE", "WARC_DIR", "collect"]
