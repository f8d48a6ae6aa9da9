"""The crawl stage's settings (``crawl:`` in the pipeline YAML)."""

from __future__ import annotations

from pydantic import Field, model_validator

from llm_core.freshness import FreshSection


class CrawlConfig(FreshSection):
    """Where and how politely to crawl. ``refresh`` / ``snapshot`` (llm_core.freshness) say
    when a crawl of the same seeds is collected anew rather than reused."""

    seeds: list[str] = Field(default_factory=list)
    max_pages: int = Field(100, ge=1)
    max_depth: int = Field(3, ge=0)
    same_host: bool = True
    timeout_s: float = Field(10.0, gt=0)
    max_page_bytes: int = Field(2_000_000, ge=1024)
    # Pause between two requests to the same host (politeness).
    delay_s: float = Field(0.0, ge=0)
    user_agent: str = "llmpipe/0.1 (+https://github.com/llmpipe/llmpipe)"
    # Pages whose extracted text is shorter than this are not kept as documents.
    min_text_chars: int = Field(200, ge=0)

    @model_validator(mode="after")
    def _seeds_are_http(self) -> "CrawlConfig":
        for seed in self.seeds:
            if not seed.startswith(("http://", "https://")):
                raise ValueError(f"seed {seed!r} is not an http(s) URL")
        return self
