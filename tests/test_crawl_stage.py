"""The crawl stage end to end: a live crawl, a WARC file and a local corpus in one config,
extracted by one Spark job into one documents table, published atomically."""

from __future__ import annotations

import json

import pytest

from llm_core.config import parse_config
from llm_core.crawl import WARC_DIR
from llm_core.documents import DOCS_DIR, read_documents
from llm_core.errors import StageError
from llm_core.stages import get_stage, run_stage
from llm_core.storage import WORK_PREFIX


def stage_config(tmp_path, spark_config, **crawl):
    return parse_config({"project": {"data_root": str(tmp_path / "data")}, "spark": spark_config.model_dump(),
                         "crawl": {"max_pages": 40, "max_depth": 1, "allow_private": ["127.0.0.1"], **crawl}})


def test_mixed_sources_land_in_one_documents_table(site, shared_data, spark_config, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"body": f"Local document {i}. " + "Words of a local corpus. " * 20})
                                for i in range(3)))
    warc = shared_data / "warc_dolma_cc_samples" / "sample-0000.warc.gz"
    config = stage_config(tmp_path, spark_config, seeds=[site.url], warc=[str(warc)],
                          local=[{"path": str(corpus), "format": "jsonl", "text_field": "body"}])
    output = run_stage("crawl", config, {})
    docs = read_documents(output.path / DOCS_DIR).to_pylist()
    by_source = {s: [d for d in docs if d["source"] == s] for s in ("crawl", "warc", "local")}
    assert len(by_source["crawl"]) >= 20 and len(by_source["warc"]) >= 1 and len(by_source["local"]) == 3
    assert all(d["url"].startswith(site.url) for d in by_source["crawl"])
    latin1 = [d for d in by_source["crawl"] if d["url"].endswith("/latin1.html")]
    assert latin1 and "Straßenbahn fährt über die Brücke" in latin1[0]["text"], "a non-UTF-8 page is decoded"
    assert output.stats["docs_out"] == len(docs)
    assert output.stats["pages_fetched"] == output.stats["crawl"]["pages_fetched"] >= 30
    assert sorted(p.name for p in (output.path / WARC_DIR).iterdir()) == ["pages-00000.warc.gz"]
    assert not list(output.path.parent.glob(f"{WORK_PREFIX}*")), "the crawl's resumable state is gone once published"
    corpus.write_text(corpus.read_text() + "\n" + json.dumps({"body": "One more local document. " * 20}))
    assert get_stage("crawl").key(config, {}) != output.key, "a source file changed in place changes the key"


def test_a_source_that_matches_nothing_fails_before_anything_is_published(spark_config, tmp_path):
    config = stage_config(tmp_path, spark_config, warc=[str(tmp_path / "nowhere" / "*.warc.gz")])
    with pytest.raises(StageError, match=r"nowhere/\*\.warc\.gz"):
        run_stage("crawl", config, {})
    crawl_dir = tmp_path / "data" / "crawl"  # the key is computed from the sources: the error comes first
    assert not crawl_dir.exists() or not [p for p in crawl_dir.iterdir() if not p.name.endswith(".lock")]


def test_no_source_is_a_clear_error(spark_config, tmp_path):
    with pytest.raises(StageError, match=r"no sources: set crawl.seeds"):
        run_stage("crawl", stage_config(tmp_path, spark_config), {})
