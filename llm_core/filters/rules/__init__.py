"""The document rules, in their default order: list a new rule here (one line) to make it available.

``filter.rules`` in the config chooses which of them run, and in which order; each rule's
settings live under its name (``filter.language.threshold``...).
"""

from llm_core.filters.rule import Rule
from llm_core.filters.rules.gopher_quality import GopherQuality
from llm_core.filters.rules.language import LanguageId
from llm_core.filters.rules.normalise import Normalise
from llm_core.filters.rules.pii import Pii

RULES: tuple[type[Rule], ...] = (
    Normalise,
    LanguageId,
    GopherQuality,
    Pii,
)

RULES_BY_NAME: dict[str, type[Rule]] = {rule.name: rule for rule in RULES}
