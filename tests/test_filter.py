"""The filter stage: the rule contract, the runner, the audit trail, on real documents."""

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from llm_core.config import FilterConfig
from llm_core.documents import DOCS_DIR, DOCUMENT_SCHEMA, REJECTED_DIR, read_documents, write_documents
from llm_core.errors import StageError
from llm_core.filters import filter_documents
from llm_core.filters.rule import Rule, RuleConfig, Verdict
from llm_core.filters.runner import RULE_ERROR, TRACE, apply_rules

REPO = Path(__file__).resolve().parents[1]


def paragraphs(shared_data, lang, count, sentences_per_doc=12):
    lines = (shared_data / "langid_lingua_testdata" / "sentences" / f"{lang}.txt").read_text().splitlines()
    lines = [line for line in lines if line.strip()]
    return [" ".join(lines[i * sentences_per_doc:(i + 1) * sentences_per_doc]) for i in range(count)]


def write(tmp_path, texts):
    rows = [{"id": f"d{i}", "url": f"http://x/{i}", "source": "test", "text": t} for i, t in enumerate(texts)]
    write_documents(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), tmp_path / "in")
    return tmp_path / "in"


def batch_of(texts):
    return pa.RecordBatch.from_pylist([{"id": f"d{i}", "text": t} for i, t in enumerate(texts)])


class Upper(Rule):
    """Rewrites text: upper-cases it."""
    name = "upper"

    def check(self, doc):
        return Verdict.keep(text=doc.text.upper())


class ShortConfig(RuleConfig):
    min_chars: int = 5


class Short(Rule):
    name = "short"
    Config = ShortConfig
    signals = {"short_chars": pa.int32()}

    def check(self, doc):
        if len(doc.text) < self.config.min_chars:
            return Verdict.drop("too_short", len(doc.text), short_chars=len(doc.text))
        return Verdict.keep(short_chars=len(doc.text))


class Broken(Rule):
    name = "broken"

    def check(self, doc):
        if "boom" in doc.text:
            raise ValueError("a bug in a rule")
        return Verdict.keep()


def test_runner_applies_rules_in_order_and_records_verdicts():
    out = apply_rules([Upper(), Short(ShortConfig(min_chars=4)), Broken()], batch_of(["abc", "hello", "boom boom"]))
    rows = out.to_pylist()
    assert [r["text"] for r in rows] == ["ABC", "HELLO", "BOOM BOOM"], "rewritten text is passed on"
    assert [(r["reason"], r["rule"], r["reason_value"]) for r in rows] == [
        ("too_short", "short", 3.0), (None, None, None), (None, None, None)], "BOOM is upper-cased before Broken sees it"
    assert [r["short_chars"] for r in rows] == [3, 5, 9]
    assert [r[TRACE] for r in rows] == [[3, 3], [5, 5, 5, 5], [9, 9, 9, 9]]


def test_a_rule_failing_on_one_document_rejects_that_document_only():
    out = apply_rules([Short(), Broken()], batch_of(["fine text", "boom goes the rule", "also fine"])).to_pylist()
    assert [(r["reason"], r["rule"]) for r in out] == [(None, None), (RULE_ERROR, "broken"), (None, None)]


def test_dropped_documents_are_not_shown_to_later_rules():
    seen = []

    class Spy(Rule):
        name = "spy"

        def check(self, doc):
            seen.append(doc.text)
            return Verdict.keep()

    apply_rules([Short(), Spy()], batch_of(["x", "long enough"]))
    assert seen == ["long enough"]


def test_filter_config_comes_from_the_rule_registry():
    config = FilterConfig(rules=["gopher_quality", "language"], language={"languages": ["de"], "threshold": 0.3})
    assert [r.name for r in config.build_rules()] == ["gopher_quality", "language"]
    assert config.language.threshold == 0.3 and config.gopher_quality.min_words == 50
    with pytest.raises(ValueError, match="unknown filter rule"):
        FilterConfig(rules=["no_such_rule"])
    with pytest.raises(ValueError, match="more than once"):
        FilterConfig(rules=["language", "language"])
    with pytest.raises(ValueError, match="Extra inputs"):
        FilterConfig(langauge={})


def test_filter_stage_keeps_audits_and_counts(shared_data, spark_config, tmp_path):
    english = paragraphs(shared_data, "en", 6)
    german = paragraphs(shared_data, "de", 3)
    junk = ["12 34 56 78 -- ## == " * 20, "too short to keep"]
    docs_dir = write(tmp_path, english + german + junk)
    config = FilterConfig(rules=["language", "gopher_quality"], language={"languages": ["en"]})
    stats = filter_documents(config, spark_config, docs_dir, tmp_path / "out")

    kept = read_documents(tmp_path / "out" / DOCS_DIR)
    rejected = read_documents(tmp_path / "out" / REJECTED_DIR)
    assert sorted(kept.column("id").to_pylist()) == [f"d{i}" for i in range(6)]
    assert set(kept.column("lang").to_pylist()) == {"en"}
    assert min(kept.column("lang_score").to_pylist()) > 0.65
    assert "reason" not in kept.column_names and "gopher_words" in kept.column_names and TRACE not in kept.column_names
    verdicts = {r["id"]: (r["rule"], r["reason"]) for r in rejected.to_pylist()}
    assert verdicts == {"d6": ("language", "language_not_allowed"), "d7": ("language", "language_not_allowed"),
                        "d8": ("language", "language_not_allowed"), "d9": ("language", "language_low_confidence"),
                        "d10": ("gopher_quality", "gopher_too_few_words")}
    assert rejected.column("text").to_pylist()[0], "rejected documents keep their text for audit"
    assert stats["docs_in"] == 11 and stats["docs_out"] == 6
    assert stats["dropped"] == {"language_not_allowed": 3, "language_low_confidence": 1, "gopher_too_few_words": 1}
    assert stats["dropped_by_rule"] == {"language": 4, "gopher_quality": 1}

    language_step, quality_step = stats["funnel"]
    assert (language_step["rule"], language_step["docs_in"], language_step["docs_out"]) == ("language", 11, 7)
    assert (quality_step["docs_in"], quality_step["docs_out"]) == (7, 6)
    assert language_step["chars_in"] == sum(len(t) for t in english + german + junk)
    assert quality_step["chars_out"] == sum(len(t) for t in english)
    by_language = {(r["language"], r["rule"]): (r["docs_in"], r["docs_out"]) for r in stats["funnel_by_language"]}
    assert by_language[("de", "language")] == (3, 0) and by_language[("en", "gopher_quality")] == (7, 6)
    assert stats["languages_kept"] == {"en": 6}


def test_everything_filtered_is_a_clear_error(shared_data, spark_config, tmp_path):
    docs_dir = write(tmp_path, paragraphs(shared_data, "de", 3))
    with pytest.raises(StageError, match=r"\[filter\] all 3 documents were filtered out.*language_not_allowed"):
        filter_documents(FilterConfig(language={"languages": ["en"]}), spark_config, docs_dir, tmp_path / "out")
    assert not (tmp_path / "out" / DOCS_DIR).exists()


NEW_RULE = '''
"""Drops documents that shout: the share of upper-case letters above a threshold."""

import pyarrow as pa
from pydantic import Field

from llm_core.filters.rule import Rule, RuleConfig, Verdict


class ShoutingConfig(RuleConfig):
    max_upper_ratio: float = Field(0.5, ge=0, le=1)


class Shouting(Rule):
    name = "shouting"
    Config = ShoutingConfig
    signals = {"shouting_upper_ratio": pa.float32()}

    def check(self, doc):
        letters = [c for c in doc.text if c.isalpha()]
        ratio = sum(c.isupper() for c in letters) / len(letters) if letters else 0.0
        if ratio > self.config.max_upper_ratio:
            return Verdict.drop("shouting", ratio, shouting_upper_ratio=ratio)
        return Verdict.keep(shouting_upper_ratio=ratio)
'''

USE_NEW_RULE = '''
import pyarrow as pa
from llm_core.config import load_config
from llm_core.filters.runner import apply_rules

config = load_config({config!r}, ["filter.rules=[language, shouting]", "filter.shouting.max_upper_ratio=0.6",
                                   "filter.language.languages=[]", "filter.language.threshold=0"])
texts = ["A calm sentence about the weather in the hills today.", "THIS IS ALL SHOUTING ABOUT NOTHING AT ALL!"]
out = apply_rules(config.filter.build_rules(), pa.RecordBatch.from_pylist([dict(id=str(i), text=t) for i, t in enumerate(texts)]))
print([(r["rule"], r["reason"], round(r["shouting_upper_ratio"], 2)) for r in out.to_pylist()])
'''


def test_a_new_rule_is_one_module_and_one_line(tmp_path):
    """The documented way to add a rule, in a copy of the library: nothing else changes."""
    root = tmp_path / "copy"
    shutil.copytree(REPO / "llm_core", root / "llm_core", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "configs", root / "configs")
    (root / "llm_core" / "filters" / "rules" / "shouting.py").write_text(NEW_RULE)
    registry = root / "llm_core" / "filters" / "rules" / "__init__.py"
    source = registry.read_text()
    source = source.replace("\nRULES", "\nfrom llm_core.filters.rules.shouting import Shouting\n\nRULES", 1)
    registry.write_text(source.replace("RULES: tuple[type[Rule], ...] = (\n", "RULES: tuple[type[Rule], ...] = (\n    Shouting,\n", 1))
    script = USE_NEW_RULE.format(config=str(root / "configs" / "tiny.yaml"))
    result = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=300,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(root)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[(None, None, 0.02), ('shouting', 'shouting', 1.0)]"
