"""The filter stage's settings (``filter:`` in the pipeline YAML).

Built from the rule registry (``llm_core/filters/rules/__init__.py``): ``rules`` lists the
rules to run, in order, and each registered rule has a sub-section under its own name with
its rule's config model and defaults, so a new rule brings its settings with it::

    filter:
      rules: [normalise, language, gopher_quality]
      language: {languages: [en, de], threshold: 0.5}
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, create_model, field_validator, model_validator

from llm_core.filters.rule import Rule
from llm_core.filters.rules import RULES, RULES_BY_NAME
from llm_core.section import Section


class _FilterSection(Section):
    # Every registered rule, in registry order, except those that need the user's settings first.
    rules: list[str] = Field(default_factory=lambda: [rule.name for rule in RULES if not rule.needs])

    @field_validator("rules")
    @classmethod
    def _known_and_once(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in RULES_BY_NAME]
        if unknown:
            raise ValueError(f"unknown filter rule(s) {unknown}; known: {sorted(RULES_BY_NAME)}")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"filter rule(s) listed more than once: {repeated}")
        return names

    @model_validator(mode="after")
    def _listed_rules_are_set_up(self) -> "_FilterSection":
        for name in self.rules:
            for setting in RULES_BY_NAME[name].needs:
                if not getattr(getattr(self, name), setting):
                    raise ValueError(f"filter rule {name} needs filter.{name}.{setting} (or remove it from filter.rules)")
        return self

    def build_rules(self) -> list[Rule]:
        """The configured rules, in order, each with its own settings."""
        return [RULES_BY_NAME[name](getattr(self, name)) for name in self.rules]

    def input_files(self) -> list[Path]:
        """Files the configured rules read besides the documents (their content enters the key)."""
        return [path for name in self.rules for path in getattr(self, name).input_files()]


FilterConfig = create_model(
    "FilterConfig",
    __base__=_FilterSection,
    __module__=__name__,
    **{rule.name: (rule.Config, Field(default_factory=rule.Config)) for rule in RULES},
)
