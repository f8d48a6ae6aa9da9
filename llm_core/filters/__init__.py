"""Filter stage: language ID and quality rules as a Spark job; dropped documents kept with a reason."""

from llm_core.documents import DOCS_DIR
from llm_core.filters.langid import MODEL_FILE as LANGID_MODEL_FILE
from llm_core.filters.langid import model_path as langid_model_path
from llm_core.filters.stage import filter_documents
from llm_core.stage import Stage

STAGE = Stage(
    "filter", package=__name__, inputs=("dedupe",),
    build=lambda config, inputs, out: filter_documents(config.filter, config.spark, inputs["dedupe"].file(DOCS_DIR), out),
    libraries=("fasttext-predict",),
    data_files=lambda: {LANGID_MODEL_FILE: langid_model_path()},
)

__all__ = ["STAGE", "filter_documents"]
