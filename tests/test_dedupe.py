import json

import pyarrow as pa
import pytest

from llm_core.config import DedupeConfig
from llm_core.dedup import dedupe
from llm_core.dedup.dedupe import find_duplicates
from llm_core.documents import DOCS_DIR, DOCUMENT_SCHEMA, REJECTED_DIR, read_documents, write_documents
from llm_core.errors import StageError


def judged_pairs(shared_data, lo, hi):
    """Webis CopyCat pairs whose word-8-gram containment (S3) lies in [lo, hi]."""
    rows = [json.loads(line) for line in (shared_data / "neardup_webis_copycat_canonical_edges" / "pairs.jsonl").open()]
    return [r for r in rows if lo <= float(r["metadata_parsed"]["S3"]) <= hi and len(r["src_doc"].split()) > 50]


def pair_flagged(src, target, config):
    reasons, clusters, _ = find_duplicates([src, target], ["a", "b"], config)
    return reasons[1] is not None


def test_near_duplicates_on_judged_pairs(shared_data):
    config = DedupeConfig(exact=False, threshold=0.8)
    near = judged_pairs(shared_data, 0.95, 1.0)
    # Every judged pair is fairly similar (S3 >= 0.4), so unrelated pairs are made by crossing them.
    far = [(a["src_doc"], b["target_doc"]) for a, b in zip(near, near[1:] + near[:1])]
    assert len(near) >= 20
    recall = sum(pair_flagged(r["src_doc"], r["target_doc"], config) for r in near) / len(near)
    false_positive = sum(pair_flagged(a, b, config) for a, b in far) / len(far)
    assert recall >= 0.8, recall
    assert false_positive <= 0.05, false_positive


def test_exact_duplicates_ignore_case_and_whitespace():
    texts = ["The quick brown fox.", "the  quick\nbrown FOX.", "Something else entirely."]
    reasons, clusters, _ = find_duplicates(texts, ["a", "b", "c"], DedupeConfig(near=False))
    assert reasons == [None, "exact_duplicate", None]
    assert clusters == ["a", "a", "c"]


def make_docs(texts):
    rows = [{"id": f"d{i}", "url": f"http://x/{i}", "source": "test", "text": t} for i, t in enumerate(texts)]
    return pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)


def test_stage_keeps_first_and_audits_the_rest(tmp_path, shared_data, spark_config):
    pair = next(r for r in judged_pairs(shared_data, 0.97, 1.0) if r["src_doc"].split() != r["target_doc"].split())
    base = pair["src_doc"]
    texts = [base, base.upper(), pair["target_doc"], "a completely different short document about cats " * 10]
    write_documents(make_docs(texts), tmp_path / "in")
    stats = dedupe(DedupeConfig(), spark_config, tmp_path / "in", tmp_path / "out")
    kept = read_documents(tmp_path / "out" / DOCS_DIR)
    rejected = read_documents(tmp_path / "out" / REJECTED_DIR).to_pylist()
    assert kept.column("id").to_pylist() == ["d0", "d3"]
    assert {(r["id"], r["reason"], r["rule"], r["dup_cluster"]) for r in rejected} == {
        ("d1", "exact_duplicate", "exact_dedupe", "d0"), ("d2", "near_duplicate", "near_dedupe", "d0")}
    near = next(r for r in rejected if r["id"] == "d2")
    assert 0.8 <= near["reason_value"] <= 1.0, "the estimated similarity to the kept document"
    assert "reason" not in kept.column_names and "rule" not in kept.column_names
    assert stats == {"docs_in": 4, "docs_out": 2, "dropped": {"exact_duplicate": 1, "near_duplicate": 1},
                     "dropped_by_rule": {"exact_dedupe": 1, "near_dedupe": 1}}


def test_empty_input_is_a_clear_error(tmp_path, spark_config):
    write_documents(make_docs([]), tmp_path / "in")
    with pytest.raises(StageError, match=r"\[dedupe\] no input documents"):
        dedupe(DedupeConfig(), spark_config, tmp_path / "in", tmp_path / "out")


def test_rows_sharing_an_id_are_deduplicated_not_rejected_by_the_index():
    texts = ["the same page fetched twice " * 20, "the same page fetched twice " * 20 + "!", "other " * 40]
    reasons, clusters, _ = find_duplicates(texts, ["u1", "u1", "u2"], DedupeConfig(exact=False))
    assert reasons == [None, "near_duplicate", None]
    assert clusters == ["u1", "u1", "u2"]
