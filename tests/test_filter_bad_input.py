"""Bad input never crashes a rule: every document is kept, or rejected with a reason."""

import pyarrow as pa
import pytest

from llm_core.filters.rule import Rule
from llm_core.filters.rules import RULES
from llm_core.filters.runner import RULE_ERROR, apply_rules

BAD_TEXTS = {
    "empty": "",
    "whitespace": " \n\t \n",
    "emoji": "\U0001F600",
    "unknown_script": "\U00013000\U00013001\U00013002 \U00013003\U00013004 \U00013005",  # Egyptian hieroglyphs
    "control_chars": "a\x00b\x07c\x1b[31m red \x7f",
    "lone_surrogate": "broken \ud800 text",
    "huge": ("A long line of ordinary English words, repeated many times over. " * 16) + "\n",
}
HUGE_COPIES = 10_000  # ~10 MB


def bad_batch() -> pa.RecordBatch:
    texts = dict(BAD_TEXTS, huge=BAD_TEXTS["huge"] * HUGE_COPIES)
    # A lone surrogate cannot be UTF-8; Arrow holds the bytes an ill-behaved writer would leave.
    texts["lone_surrogate"] = texts["lone_surrogate"].encode("utf-8", "surrogatepass")
    encoded = [t if isinstance(t, bytes) else t.encode() for t in texts.values()]
    text = pa.array(encoded + [None], pa.binary()).view(pa.string())
    ids = pa.array(list(texts) + ["null_text"])
    url = pa.array([None] * len(ids), pa.string())
    return pa.RecordBatch.from_arrays([ids, url, text], names=["id", "url", "text"])


def needs_no_fitting(rule: type[Rule]) -> bool:
    return rule.fit is Rule.fit


@pytest.mark.parametrize("rule", [r for r in RULES if needs_no_fitting(r)], ids=lambda r: r.name)
def test_rule_keeps_or_rejects_every_bad_document(rule):
    out = apply_rules([rule()], bad_batch()).to_pylist()
    assert len(out) == len(BAD_TEXTS) + 1
    for row in out:
        assert row["reason"] != RULE_ERROR, f"{rule.name} raised on {row['id']}"
        assert row["text"] is not None
        if row["reason"] is not None:
            assert row["rule"] == rule.name


def test_all_rules_together_on_bad_input():
    rules = [r() for r in RULES if needs_no_fitting(r)]
    out = apply_rules(rules, bad_batch()).to_pylist()
    assert all(row["reason"] != RULE_ERROR for row in out), [(r["id"], r["rule"]) for r in out]
    assert {r["id"]: r["reason"] is not None for r in out}["empty"], "an empty document is rejected"
