"""Crawl stage: fetch pages politely, keep the raw responses as WARC, the main text as documents."""

from llm_core.crawl.crawler import CODE_VERSION, crawl

__all__ = ["CODE_VERSION", "crawl"]
