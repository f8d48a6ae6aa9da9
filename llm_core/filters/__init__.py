"""Filter stage: language ID and quality rules as a Spark job; dropped documents kept with a reason."""

from llm_core.filters.stage import CODE_VERSION, filter_documents

__all__ = ["CODE_VERSION", "filter_documents"]
