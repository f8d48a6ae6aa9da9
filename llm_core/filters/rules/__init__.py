"""The document rules, in their default order: list a new rule here (one line) to make it available.

``filter.rules`` in the config chooses which of them run, and in which order; each rule's
settings live under its name (``filter.language.threshold``...).
"""

from llm_core.filters.rule import Rule
from llm_core.filters.rules.c4 import C4
from llm_core.filters.rules.fineweb import FineWeb
from llm_core.filters.rules.gopher_quality import GopherQuality
from llm_core.filters.rules.gopher_repetition import GopherRepetition
from llm_core.filters.rules.language import LanguageId
from llm_core.filters.rules.normalise import Normalise
from llm_core.filters.rules.pii import Pii
from llm_core.filters.rules.quality_classifier import QualityClassifier

RULES: tuple[type[Rule], ...] = (
    Normalise,
    LanguageId,
    GopherQuality,
    GopherRepetition,
    C4,
    FineWeb,
    QualityClassifier,
    Pii,
)

RULES_BY_NAME: dict[str, type[Rule]] = {rule.name: rule for rule in RULES}
