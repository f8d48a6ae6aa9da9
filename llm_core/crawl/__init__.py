"""Crawl stage: fetch pages politely, keep the raw responses as WARC, the main text as documents."""

from llm_core.crawl.crawler import WARC_FILE, crawl
from llm_core.stage import Stage

STAGE = Stage(
    "crawl", package=__name__, inputs=(),
    build=lambda config, inputs, out: crawl(config.crawl, out),
    # trafilatura's own extraction helpers (justext, htmldate, charset-normalizer) shape the text too.
    libraries=("trafilatura", "justext", "htmldate", "charset-normalizer", "courlan", "protego", "warcio", "httpx",
               "beautifulsoup4", "lxml"),
)

__all__ = ["STAGE", "WARC_FILE", "crawl"]
