"""Crawl as a Prefect task: retried, since servers and networks fail transiently."""

from tasks.common import stage_task

crawl = stage_task("crawl", retries=2)
