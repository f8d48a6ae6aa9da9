"""Filter stage: ordered document rules (normalisation, language ID, quality, PII...) in one Spark pass.

Rules follow one contract (``llm_core/filters/rule.py``) and are listed in
``llm_core/filters/rules/__init__.py``; dropped documents are kept in ``rejected/`` with the
rule, the reason and the failing value.
"""

from llm_core.documents import DOCS_DIR
from llm_core.filters.langid import MODEL_FILE as LANGID_MODEL_FILE
from llm_core.filters.langid import model_path as langid_model_path
from llm_core.filters.stage import FUNNEL_TABLES, MODELS_DIR, filter_documents
from llm_core.stage import Stage

STAGE = Stage(
    "filter", package=__name__, inputs=("dedupe",),
    build=lambda config, inputs, out: filter_documents(config.filter, config.spark, inputs["dedupe"].file(DOCS_DIR), out),
    # The model, text-repair, segmentation and phone-number data behind the rules: their versions shape the output.
    libraries=("fasttext-predict", "ftfy", "rjieba", "sudachipy", "sudachidict-small", "nlpo3", "pythainlp",
               "phonenumbers", "mmh3"),
    data_files=lambda: {LANGID_MODEL_FILE: langid_model_path()},
    input_files=lambda section: section.input_files(),
    artifacts=(MODELS_DIR,),
    tables=FUNNEL_TABLES,
)

__all__ = ["STAGE", "filter_documents"]
