"""Shared by the benchmark scripts (not a benchmark itself): progress on stderr, the shared data folder,
figures rounded for the JSON line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def log(message: str) -> None:
    """Progress and explanations go to stderr: stdout's last line is the JSON of figures."""
    print(message, file=sys.stderr, flush=True)


def shared_data() -> Path:
    """``LLMPIPE_SHARED_DATA``, else ``../shared/data`` beside the repository."""
    root = Path(os.environ.get("LLMPIPE_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not root.is_dir():
        sys.exit(f"shared data not found at {root} (set LLMPIPE_SHARED_DATA)")
    return root


def rounded(value, digits: int = 4):
    """Floats rounded to ``digits``, in nested dicts and lists too: the JSON line stays readable."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value
