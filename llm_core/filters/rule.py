"""The contract every document rule follows, in the spirit of datatrove's ``BaseFilter``.

A rule is a class with

- ``name``: its config key, the ``rule`` column of what it rejects, its row in the funnel;
- ``Config``: a :class:`RuleConfig` whose field defaults are the rule's published defaults;
- ``signals``: the columns it adds (name -> Arrow type), each prefixed by a short tag of the rule;
- ``check(doc)``: a :class:`Verdict` for one document: its signals, and, when it drops the
  document, a ``reason`` and the failing ``value``; a rule that rewrites text (normalisation,
  PII) returns the new ``text``.

A rule whose work is cheaper per batch (one model call for many documents) overrides
``check_batch`` instead. Models and tables are loaded lazily through module-level caches, so
each Python worker loads them once, not once per row or batch. A model file the rule reads
(the fastText language-ID model) is listed by ``files``: the stage ships it with the Spark
job (``SparkContext.addFile``), and the worker loads the copy :func:`shipped_file` finds, so
executors on a cluster need no copy of their own and all read the file the stage's key
hashed. A rule that learns from the
corpus (the quality classifier) overrides ``fit``, which runs on the driver before the pass;
files its config names (training references) are listed by ``RuleConfig.input_files`` so
that their content enters the stage's key.

Adding a rule is one module that defines the class, plus one line in
``llm_core/filters/rules/__init__.py`` that lists it; its settings appear under its name in
the ``filter:`` section and its signals as columns, with nothing else to change.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import pyarrow as pa
from pydantic import model_validator

from llm_core.section import Section


class RuleConfig(Section):
    """Settings of one rule; the field defaults are the rule's defaults. Every ``min_X`` /
    ``max_X`` pair of fields must be ordered (checked here for all rules)."""

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> "RuleConfig":
        values = self.model_dump()
        for name, low in values.items():
            high = values.get("max_" + name.removeprefix("min_")) if name.startswith("min_") else None
            if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low > high:
                raise ValueError(f"{name} ({low}) exceeds max_{name.removeprefix('min_')} ({high})")
        return self

    def input_files(self) -> list[Path]:
        """Files (or folders) the rule reads besides the documents: hashed into the stage key."""
        return []


@dataclass(slots=True)
class Document:
    """What a rule sees: the current text and the row's other fields, including the signals
    that earlier rules added (``lang`` after language ID, for instance)."""

    text: str
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def lang(self) -> str | None:
        return self.fields.get("lang")


@dataclass(slots=True)
class Verdict:
    signals: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None  # None: kept
    value: float | None = None  # the value that failed the rule's threshold, when there is one
    text: str | None = None  # the rewritten text of a rule that modifies documents

    @classmethod
    def keep(cls, text: str | None = None, **signals: Any) -> "Verdict":
        return cls(signals=signals, text=text)

    @classmethod
    def drop(cls, reason: str, value: float | None = None, **signals: Any) -> "Verdict":
        return cls(signals=signals, reason=reason, value=None if value is None else float(value))


class Rule:
    name: ClassVar[str]
    Config: ClassVar[type[RuleConfig]] = RuleConfig
    signals: ClassVar[Mapping[str, pa.DataType]] = {}
    # Config fields that must be set before the rule can run (the classifier's references);
    # such a rule is left out of the default list and listing it without them is a config error.
    needs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: RuleConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    def fit(self, docs: Any, out_dir: Path) -> dict[str, Any]:
        """Learn from the stage's input (a Spark DataFrame) before the pass, keeping what the
        pass needs on ``self`` and what is worth keeping under ``out_dir``; returns stats."""
        return {}

    def check(self, doc: Document) -> Verdict:
        raise NotImplementedError

    def check_batch(self, docs: list[Document]) -> list[Verdict]:
        return [self.check(doc) for doc in docs]

    def files(self) -> list[Path]:
        """Files the rule reads while it checks documents (a model): the stage ships them to
        every executor with the job; the rule's loader finds them there with :func:`shipped_file`."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


def shipped_file(name: str) -> Path | None:
    """This process's copy of a file the stage shipped with its Spark job (a rule's ``files``),
    or None: outside Spark, or when nothing of that name was shipped.

    On an executor it is in the executor's own working folder, fetched from the driver by
    Spark; on the driver, in the session's temporary folder. A process that never imported
    pyspark has no Spark job, so it is not imported here only to find that out."""
    if "pyspark" not in sys.modules:
        return None
    from pyspark import SparkFiles

    try:
        path = Path(SparkFiles.get(name))
    except Exception:  # noqa: BLE001 (no SparkContext: SparkFiles asserts; a stopped one: Py4JError)
        return None
    return path if path.is_file() else None
