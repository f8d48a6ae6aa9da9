"""Crawl stage: collect documents from a polite live crawl, WARC files and local corpora."""

from llm_core.crawl.collect import WARC_DIR, collect
from llm_core.stage import Stage


def source_files(section) -> list:
    """The WARC and local files the config names: their contents enter the key, so a file
    changed in place is ingested again (a glob matching nothing fails here, before any run)."""
    from llm_core.crawl.ingest import expand

    files = [p for pattern in section.warc for p in expand(pattern, "crawl.warc")]
    return files + [p for corpus in section.local for p in expand(corpus.path, "crawl.local")]


STAGE = Stage(
    "crawl", package=__name__, inputs=(),
    build=lambda config, inputs, out: collect(config, out),
    input_files=source_files,
    # trafilatura's own extraction helpers (justext, htmldate, charset-normalizer) shape the text too.
    libraries=("trafilatura", "justext", "htmldate", "charset-normalizer", "courlan", "protego", "warcio", "httpx",
               "lxml", "fastwarc"),
)

__all__ = ["STAGE", "WARC_DIR", "collect"]
