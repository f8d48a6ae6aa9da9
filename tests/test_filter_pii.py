"""PII scrubbing: precision / recall on a hand-labelled set, the rewrite, its settings, bad input, real text."""

import json
import time
from pathlib import Path

import pyarrow as pa
import pytest

from llm_core.filters.rule import Document
from llm_core.filters.evaluation import score_pii
from llm_core.filters.rules.pii import Pii, PiiConfig, PiiSpan, find_pii, redact
from llm_core.filters.runner import apply_rules

LABELLED = Path(__file__).parent / "data" / "pii_labelled.jsonl"


@pytest.fixture(scope="module")
def labelled():
    return [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]


def found(text, **settings):
    return [(s.kind, text[s.start:s.end]) for s in find_pii(text, PiiConfig(**settings))]


# Measured on tests/data/pii_labelled.jsonl (223 texts, 109 without PII; 144 labels: 37 email, 36 ip,
# 51 phone, 20 credit_card; overlap matching, exact matching gives the same):
# precision / recall email 0.97 / 1.00, ip 0.97 / 0.97, phone 0.96 / 0.92, credit_card 0.95 / 1.00,
# all 0.965 / 0.965. The misses are three national numbers of other countries (region US), a UK
# drama mobile number libphonenumber deems invalid and a public IPv4 after "curl -v" (read as a
# version cue); the false findings are an invoice and a serial number shaped like US numbers,
# "git@github.com" (an SSH login), a 15-digit IMEI passing Luhn and a product code shaped like a
# public IPv4. Thresholds: about one more error per kind than measured.
THRESHOLDS = {  # kind: (precision, recall), what was measured less a small margin
    "email": (0.94, 0.95),
    "ip": (0.94, 0.94),
    "phone": (0.93, 0.90),
    "credit_card": (0.90, 0.95),
    "all": (0.95, 0.95),
}


def test_labelled_set_precision_and_recall(labelled):
    assert len(labelled) >= 150
    kinds = {label["kind"] for row in labelled for label in row["pii"]}
    assert kinds == {"email", "ip", "phone", "credit_card"}
    assert sum(not row["pii"] for row in labelled) >= 80  # many tricky non-PII texts
    scores = score_pii(labelled)
    print({k: (round(v["precision"], 3), round(v["recall"], 3)) for k, v in scores.items()})
    for kind, (precision, recall) in THRESHOLDS.items():
        assert scores[kind]["precision"] >= precision, (kind, scores[kind])
        assert scores[kind]["recall"] >= recall, (kind, scores[kind])
    exact = score_pii(labelled, match="exact")["all"]  # spans, not only overlaps, are right
    assert exact["precision"] >= 0.95 and exact["recall"] >= 0.92, exact


def test_score_pii_counts_and_bad_labels():
    rows = [{"text": "mail a.b@example.com, call +44 20 7946 0958 ext. 5", "pii": [
        {"kind": "email", "value": "a.b@example.com"}, {"kind": "phone", "value": "+44 20 7946 0958"}]},
        {"text": "nothing here 1.2.3", "pii": []}]
    overlap, exact = score_pii(rows)["all"], score_pii(rows, match="exact")["all"]
    assert (overlap["tp"], overlap["fp"], overlap["fn"]) == (2, 0, 0)
    assert (exact["tp"], exact["fp"], exact["fn"]) == (1, 1, 1)  # the phone span includes "ext. 5"
    with pytest.raises(ValueError, match="not in the text"):
        score_pii([{"text": "abc", "pii": [{"kind": "email", "value": "x@example.com"}]}])


def test_placeholders_and_counts_per_kind():
    text = ("Jane (jane.doe+list@mail.example.org, JANE@EXAMPLE.COM) logged in from 81.2.69.160 and "
            "2a00:1450:4001:82b::200e; call (212) 555-0147 or +49 30 12345678; card 4111-1111-1111-1111.")
    verdict = Pii().check(Document(text))
    assert verdict.reason is None
    assert verdict.signals == {"pii_email": 2, "pii_ip": 2, "pii_phone": 2, "pii_credit_card": 1}
    assert verdict.text == ("Jane (<EMAIL>, <EMAIL>) logged in from <IP_ADDRESS> and <IP_ADDRESS>; "
                            "call <PHONE> or <PHONE>; card <CREDIT_CARD>.")


def test_count_only_kinds_and_placeholders_are_settings():
    text = "write to a@example.com or call +44 20 7946 0958"
    counted = Pii(PiiConfig(replace=False)).check(Document(text))
    assert counted.text is None and counted.signals["pii_email"] == 1 and counted.signals["pii_phone"] == 1
    only_email = Pii(PiiConfig(kinds=["email"], email_placeholder="[email]")).check(Document(text))
    assert only_email.text == "write to [email] or call +44 20 7946 0958"
    assert only_email.signals == {"pii_email": 1, "pii_ip": 0, "pii_phone": 0, "pii_credit_card": 0}
    assert Pii().check(Document("no personal data, version 1.2.3.4")).text is None  # unchanged: no copy


def test_private_addresses_kept_unless_asked():
    text = "router 192.168.1.1, loopback 127.0.0.1 and ::1, docs 203.0.113.9, public 81.2.69.160"
    assert found(text) == [("ip", "81.2.69.160")]
    everything = [v for _, v in found(text, ip_public_only=False)]
    # "::1" is too short to tell from code ("a::b"): an IPv6 address needs two groups and a digit
    assert everything == ["192.168.1.1", "127.0.0.1", "203.0.113.9", "81.2.69.160"]


def test_phone_region_setting():
    text = "Berlin 030 12345678, New York (212) 555-0147, London +44 20 7946 0958"
    assert [v for _, v in found(text)] == ["(212) 555-0147", "+44 20 7946 0958"]
    assert [v for _, v in found(text, phone_region="DE")] == ["030 12345678", "+44 20 7946 0958"]
    assert [v for _, v in found(text, phone_region=None)] == ["+44 20 7946 0958"]


@pytest.mark.parametrize("text", [
    "Upgrade to version 4.2.1.3 today; Chrome version 120.0.6099.109; build 10.0.19045.3803.",
    "See section 4.3.2.1; bump from v1.2.3.4 to v1.2.3.5; examples like 1.2.3.4; OID 1.3.6.1.4.1.311.",
    "Published 15.01.2024, updated 2024-01-15T10:22:31Z, due 01/15/2024, opens 09:30-17:30.",
    "It costs $1,234,567.89 or EUR 2.500.000,00; population 8,336,817; pages 123-456 (1998).",
    "The war lasted 1990-2000; ISBN 978-3-16-148410-0 and ISBN-13 9780306406157; ZIP 12345-6789.",
    "Order #2024-558812 and invoice 2024558812; timestamp 1705312800000; score 21-14.",
    "Order 1234567812345678 and 4111 1111 1111 1112 (bad check digit); IBAN DE89 3704 0044 0532 0130 00.",
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8, UUID 123e4567-e89b-12d3-a456-426614174000.",
    "std::vector<int>, crate::module::f, MAC 00:1A:2B:3C:4D:5E, 16:9, 1:45:30, John 3:16, dead:beef::.",
    "Coordinates 40.7128, -74.0060 and (48.8584, 2.2945); 3x + 2 = 11; ratio 1:25,000.",
    "Follow @example_shop, retina logo@2x.png, python@2.7, npm i @angular/core@17.0.3, user@localhost.",
])
def test_non_pii_is_left_alone(text):
    assert found(text) == []
    assert Pii().check(Document(text)).text is None


@pytest.mark.parametrize("text", [
    "", " ", "\n\n", "😀" * 1000, "\x00\x01\ud800\udfff", "@", "::", ":::::::::", ".", "1.", "+", "(",
    "a@" * 100, "1." * 100, "+1 " * 100, "\u0661\u0662\u0663.\u0661.\u0661.\u0661",  # Arabic-Indic digits
    "x@" + "a." * 500 + "com", "1" * 5000, "4" * 19, "ff:" * 100, "tel: +" + "9" * 40,
])
def test_odd_input_never_raises(text):
    verdict = Pii().check(Document(text))
    assert verdict.reason is None
    assert all(isinstance(v, int) for v in verdict.signals.values())


@pytest.mark.parametrize("unit", ["a", "a@", "a.", "1.", "1:", "1 ", "1-", "x@y.", "ff::", "john.doe.", "@.", "0:0"])
def test_patterns_are_linear_time(unit):
    """Runs of the characters the patterns are made of, 1 MB each: no quadratic backtracking
    (phone numbers are checked by the slower libphonenumber matcher, and below)."""
    text = unit * (1_000_000 // len(unit))
    t0 = time.perf_counter()
    find_pii(text, PiiConfig(kinds=["email", "ip", "credit_card"]))
    assert time.perf_counter() - t0 < 3.0


def test_phone_matcher_on_number_dense_text_is_linear():
    small, large = "12 34 " * 1_000, "12 34 " * 4_000
    times = []
    for text in (small, large):
        t0 = time.perf_counter()
        assert find_pii(text) == []
        times.append(time.perf_counter() - t0)
    assert times[1] < 8 * times[0] + 0.5  # four times the text, not sixteen times the time


def test_redact_joins_around_spans():
    text = "ab cd ef"
    assert redact(text, [PiiSpan("email", 0, 2), PiiSpan("ip", 6, 8)]) == "<EMAIL> cd <IP_ADDRESS>"


def test_runner_rewrites_text_and_adds_int_signals():
    texts = ["mail me: x.y@example.com", "nothing to see", None, "call +44 20 7946 0958 or +44 20 7946 0959"]
    batch = pa.RecordBatch.from_pydict({"id": ["a", "b", "c", "d"], "text": pa.array(texts, pa.string())})
    out = apply_rules([Pii()], batch)
    assert out.column("text").to_pylist() == ["mail me: <EMAIL>", "nothing to see", "", "call <PHONE> or <PHONE>"]
    assert out.schema.field("pii_phone").type == pa.int32()
    assert out.column("pii_email").to_pylist() == [1, 0, 0, 0]
    assert out.column("pii_phone").to_pylist() == [0, 0, 0, 2]
    assert out.column("reason").to_pylist() == [None] * 4  # never drops


def test_real_english_text_has_few_false_replacements(shared_data):
    """Wikipedia articles (WikiText-2) and CCNet web pages: the findings are printed for inspection.
    Measured: none in either (1.45 M characters), at 3-5 M characters per second on one core."""
    texts = [json.loads(line)["text"] for path in sorted((shared_data / "text_ccnet_en_head_dolma").glob("cc_*.jsonl"))
             for line in path.read_text(encoding="utf-8").splitlines()]
    wiki = (shared_data / "text_wikitext2_raw_test" / "wikitext-test.txt").read_text(encoding="utf-8")
    texts += [p for p in wiki.split("\n = ") if p.strip()]  # one document per article
    chars = sum(map(len, texts))
    assert chars > 1_000_000
    t0 = time.perf_counter()
    findings = [(s.kind, t[max(0, s.start - 30):s.end + 30]) for t in texts for s in find_pii(t)]
    seconds = time.perf_counter() - t0
    print(f"{chars / seconds / 1e6:.2f} M chars/s; findings: {findings}")
    assert len(findings) <= 3, findings
    assert chars / seconds > 0.3e6  # loose: a shared 2-core machine; measured 3-5 M chars/s
