import json
import os
import random
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash, MinHashLSH
from pydantic import ValidationError

from llm_core.config import DedupeConfig, PipelineConfig
from llm_core.dedup import dedupe
from llm_core.dedup.components import connected_components
from llm_core.dedup.index import INDEX_DIR
from llm_core.dedup.minhash import signatures
from llm_core.dedup.near import banding
from llm_core.dedup.shingles import normalise, shingles
from llm_core.documents import DOCS_DIR, DOCUMENT_SCHEMA, REJECTED_DIR, read_documents, write_documents
from llm_core.errors import ConfigError, StageError


def all_pairs(shared_data):
    return [json.loads(line) for line in (shared_data / "neardup_webis_copycat_canonical_edges" / "pairs.jsonl").open()]


def judged_pairs(shared_data, lo, hi):
    """Webis CopyCat pairs whose word-8-gram containment (S3) lies in [lo, hi]."""
    return [r for r in all_pairs(shared_data)
            if lo <= float(r["metadata_parsed"]["S3"]) <= hi and len(r["src_doc"].split()) > 50]


def make_docs(texts, urls=None, fetched=None, prefix=""):
    rows = [{"id": f"{prefix}d{i}", "url": (urls[i] if urls else f"http://x/{i}"), "source": "test", "text": t,
             "fetched_at": fetched[i] if fetched else None} for i, t in enumerate(texts)]
    return pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)


def run_stage(tmp_path, table, config=DedupeConfig(), spark_config=None):
    write_documents(table, tmp_path / "in")
    stats = dedupe(config, spark_config, tmp_path / "in", tmp_path / "out")
    # The texts are left out: one test writes bytes that are not UTF-8 on purpose.
    kept = read_documents(tmp_path / "out" / DOCS_DIR).drop_columns(["text"]).to_pylist()
    rejected = read_documents(tmp_path / "out" / REJECTED_DIR).drop_columns(["text"]).to_pylist()
    return stats, kept, rejected


# --- one stage run (default settings) that several tests below only read ----------------------
# A stage run costs 10-25 s of Spark jobs whatever its size, so the tests that check verdicts of a
# run with the default settings share one: each gives it a group of documents under its own id
# prefix and URL host. No group repeats or resembles another (no pair across groups comes near
# the threshold), so each group's verdicts are those of a run of its own; within a group the ids
# keep their order, so the keep rule's tie-breaks and the dup_cluster names are unchanged.

def keeper_group(shared_data):
    """m and z are exact copies, m is kept by the exact pass, then m loses the near pass to
    the longer b."""
    words = (shared_data / "text_sentencepiece_novels" / "botchan.txt").read_text().split()[2000:2300]
    a, b = " ".join(words), " ".join(words[:150] + ["inserted"] + words[150:])
    return [("m", a), ("z", a.upper()), ("b", b)]


def copies_group(shared_data):
    """m is kept over its exact copy z, then kept again over its near copy b."""
    words = (shared_data / "text_sentencepiece_novels" / "botchan.txt").read_text().split()[3000:3300]
    a, b = " ".join(words) + " and a longer ending", " ".join(words[:150] + ["inserted"] + words[150:])
    return [("m", a), ("z", a.upper()), ("b", b)]


def cluster_group(shared_data):
    """Judged near pairs, an exact copy and a URL duplicate (the standalone cluster's check)."""
    pairs = judged_pairs(shared_data, 0.9, 1.0)[:12]
    texts = [t for r in pairs for t in (r["src_doc"], r["target_doc"])]
    texts += [texts[0].upper(), texts[5] + "!"]
    urls = [f"http://s/{i}" for i in range(len(texts) - 1)] + ["http://S/3#again"]
    return texts, urls


def bad_group(shared_data):
    """Empty, missing, one-word, junk-character, identical and 10 MB documents, and (d5) a text
    column holding bytes that are not UTF-8 (a lone surrogate, as CESU-8 writes it)."""
    novel = (shared_data / "text_tinyshakespeare").glob("*")
    big = next(p for p in sorted(novel) if p.is_file() and p.stat().st_size > 100_000).read_text(errors="replace")
    big = (big * (10_000_000 // len(big) + 1))[:10_000_000]
    texts = ["", None, "word", "word", "bad \ufffd text\x00 with\x07 control characters " * 5,
             "bad text with control characters " * 5, big] + ["all the same document " * 20] * 5
    raw = [t.encode() if t is not None else None for t in texts]
    raw[5] = b"bad \xed\xa0\x80 text with control characters " * 5
    return texts, raw


class SharedRun:
    """The shared run's input folder, output folder, statistics and verdicts (texts left out)."""

    def __init__(self, docs, out, stats, kept, rejected, docs_in):
        self.docs, self.out, self.stats, self.kept, self.rejected, self.docs_in = docs, out, stats, kept, rejected, docs_in

    def group(self, prefix):
        """(kept, rejected) of one group, ids and dup_of/dup_cluster without the group's prefix."""
        def strip(r):
            return {**r, **{k: r[k][len(prefix):] for k in ("id", "dup_of", "dup_cluster") if r.get(k)}}

        def mine(rows):
            return [strip(r) for r in rows if r["id"].startswith(prefix)]

        for r in self.kept + self.rejected:  # a group's documents name documents of that group only
            assert all(r[k].startswith(r["id"][:2]) for k in ("dup_of", "dup_cluster") if r.get(k)), r
        return mine(self.kept), mine(self.rejected)


@pytest.fixture(scope="module")
def shared_run(shared_data, spark_config, tmp_path_factory):
    tables = []
    for prefix, group in (("k-", keeper_group(shared_data)), ("c-", copies_group(shared_data))):
        tables.append(pa.Table.from_pylist([{"id": prefix + i, "url": f"http://{prefix[0]}/{i}", "text": t} for i, t in group],
                                           schema=DOCUMENT_SCHEMA))
    texts, urls = cluster_group(shared_data)
    tables.append(make_docs(texts, urls, prefix="s-"))
    texts, raw = bad_group(shared_data)
    bad = make_docs(texts, [f"http://b/{i}" for i in range(len(texts))], prefix="b-")
    tables.append(bad.set_column(bad.schema.get_field_index("text"), "text", pa.array(raw, pa.binary()).view(pa.string())))
    table = pa.concat_tables(tables)
    root = tmp_path_factory.mktemp("shared-run")
    stats, kept, rejected = run_stage(root, table, DedupeConfig(), spark_config)
    return SharedRun(root / "in", root / "out", stats, kept, rejected, table.num_rows)


# --- shingles and signatures: no Spark -------------------------------------------------

def test_normal_form_folds_case_punctuation_whitespace_and_junk():
    assert normalise("The  quick,\nbrown FOX!") == normalise("the quick brown fox") == "the quick brown fox"
    assert normalise("bad \ud800 surrogate\x00and\x07control") == "bad surrogate and control"
    assert normalise("ＦＵＬＬ width", nfkc=True) == "full width"
    assert shingles("", 5) == set() and shingles("!!! ...", 5) == set()
    assert shingles("one", 5) == {b"one"}


def test_scripts_without_spaces_shingle_by_character(shared_data):
    text = "我们今天去公园散步。天气很好！"
    assert shingles(text, 3) >= {"我 们 今".encode(), "天 气 很".encode()}
    assert shingles("東京タワーに行った", 2, kind="word") >= {"東 京".encode(), "タ ワ".encode()}
    assert shingles("ab cd", 3, kind="char") == {b"ab ", b"b c", b" cd"}


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
def test_signatures_equal_datasketch_on_real_documents(shared_data, scheme):
    texts = [r[k] for r in all_pairs(shared_data)[:60] for k in ("src_doc", "target_doc")] + ["", "word"]
    sets = [shingles(t, 5) for t in texts]
    ours = signatures(sets, num_perm=128, seed=7, scheme=scheme)
    theirs = MinHash.bulk(sets, num_perm=128, seed=7, scheme=scheme)
    assert (ours == np.array([m.hashvalues for m in theirs]).astype(np.uint32)).all()
    # Same estimator too: the fraction of equal slots.
    a, b = theirs[0], theirs[1]
    assert (ours[0] == ours[1]).mean() == a.jaccard(b)


def test_bands_follow_datasketch_optimum():
    for threshold, num_perm in [(0.8, 128), (0.5, 64), (0.9, 256)]:
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        assert banding(DedupeConfig(threshold=threshold, num_perm=num_perm, verify_exact=False)) == (lsh.b, lsh.r)
        # With exact verification (the default) the bands aim 0.1 lower.
        lower = MinHashLSH(threshold=threshold - 0.1, num_perm=num_perm)
        assert banding(DedupeConfig(threshold=threshold, num_perm=num_perm)) == (lower.b, lower.r)
    assert banding(DedupeConfig(bands=16, rows=8)) == (16, 8)


def test_config_is_validated():
    with pytest.raises(ValidationError, match="both bands and rows"):
        DedupeConfig(bands=4)
    with pytest.raises(ValidationError, match="exceeds num_perm"):
        DedupeConfig(bands=20, rows=10, num_perm=128)
    with pytest.raises(ValidationError):
        DedupeConfig(keep="random")
    with pytest.raises(ValidationError):
        DedupeConfig(shingles=3)  # unknown key
    with pytest.raises(ValidationError, match="candidate_threshold 0.9 is above threshold 0.8"):
        DedupeConfig(candidate_threshold=0.9)
    # A lower candidate threshold bands for it: more, shorter bands.
    lsh = MinHashLSH(threshold=0.7, num_perm=128)
    assert banding(DedupeConfig(candidate_threshold=0.7)) == (lsh.b, lsh.r)


# --- Spark jobs ---------------------------------------------------------------------------

def test_connected_components_match_a_breadth_first_search(spark_config):
    from llm_core.spark import get_spark

    rng = random.Random(3)
    edges = [(rng.randrange(200), rng.randrange(200)) for _ in range(150)]
    edges += [(1000 + i, 1001 + i) for i in range(20)]  # a long path: the slow case for star algorithms
    spark = get_spark(spark_config)
    got = {r["node"]: r["component"] for r in
           connected_components(spark.createDataFrame(edges, "u long, v long")).collect()}
    neighbours: dict[int, set[int]] = {}
    for u, v in edges:
        if u != v:
            neighbours.setdefault(u, set()).add(v)
            neighbours.setdefault(v, set()).add(u)
    expected: dict[int, int] = {}
    for start in sorted(neighbours):
        if start in expected:
            continue
        seen, todo = {start}, [start]
        while todo:
            for n in neighbours[todo.pop()] - seen:
                seen.add(n)
                todo.append(n)
        expected.update({n: min(seen) for n in seen})
    assert got == expected


def test_near_duplicates_on_judged_pairs(tmp_path, shared_data, spark_config):
    """One stage run over many judged pairs: near pairs end in one cluster, crossed pairs do not."""
    near = judged_pairs(shared_data, 0.95, 1.0)
    assert len(near) >= 20
    texts = [t for r in near for t in (r["src_doc"], r["target_doc"])]
    # exact=False: some judged pairs are identical once normalised; here the near pass must find them,
    # verified on both the signatures and the exact shingle Jaccard.
    stats, kept, rejected = run_stage(tmp_path, make_docs(texts), DedupeConfig(exact=False, url=False, verify_exact=True),
                                      spark_config)
    cluster = {r["id"]: r["dup_cluster"] for r in kept + rejected}
    found = sum(cluster[f"d{2 * i}"] == cluster[f"d{2 * i + 1}"] for i in range(len(near)))
    crossed = sum(cluster[f"d{2 * i}"] == cluster[f"d{2 * i + 3}"] for i in range(len(near) - 1))
    assert found / len(near) >= 0.8, found / len(near)
    assert crossed / (len(near) - 1) <= 0.05, crossed
    assert len(kept) + len(rejected) == len(texts)
    assert all(r["reason"] == "near_duplicate" and r["reason_value"] >= 0.8 for r in rejected)
    assert stats["near_clusters"] == len({r["dup_cluster"] for r in rejected})
    assert sum(row["clusters"] for row in stats["cluster_sizes"]) == stats["near_clusters"]


def test_stage_keeps_the_longest_and_audits_the_rest(tmp_path, shared_data, spark_config):
    pair = next(r for r in judged_pairs(shared_data, 0.97, 1.0) if r["src_doc"].split() != r["target_doc"].split())
    base, target = pair["src_doc"], pair["target_doc"]
    texts = [base, base.upper(), target, "a completely different short document about cats " * 10,
             base + " and one more sentence at the very end of the page",
             "another fetch of the cats page"]
    urls = ["http://x/0", "http://x/1", "http://x/2", "http://x/3", "http://x/4", "HTTP://X/3/#top"]
    stats, kept, rejected = run_stage(tmp_path, make_docs(texts, urls), DedupeConfig(), spark_config)
    longest = "d4" if len(texts[4]) > len(target) else "d2"
    assert [r["id"] for r in kept] == sorted([longest, "d3"])
    by_id = {r["id"]: r for r in rejected}
    assert by_id["d5"]["reason"] == "url_duplicate" and by_id["d5"]["dup_of"] == "d3"
    exact = by_id["d1"]
    # d1 is d0's exact copy; d0 then loses the near pass, so d1 follows it to the kept one.
    assert (exact["reason"], exact["rule"], exact["dup_of"], exact["dup_cluster"]) == (
        "exact_duplicate", "exact_dedupe", longest, "d0")
    near = [r for r in rejected if r["reason"] == "near_duplicate"]
    assert {r["id"] for r in near} == {"d0", "d2", "d4"} - {longest}
    for r in near:
        assert r["rule"] == "near_dedupe" and r["dup_of"] == longest and r["dup_cluster"] == "d0"
        assert 0.8 <= r["reason_value"] <= 1.0, "the estimated similarity to the kept document"
    assert {r["dup_cluster"] for r in kept} == {"d0", "d3"}
    assert "reason" not in kept[0] and "rule" not in kept[0] and kept[0]["dup_of"] is None
    assert stats["docs_in"] == 6 and stats["docs_out"] == 2
    assert stats["dropped"] == {"exact_duplicate": 1, "near_duplicate": 2, "url_duplicate": 1}
    assert (stats["url_duplicates"], stats["exact_duplicates"], stats["near_duplicates"]) == (1, 1, 2)
    assert stats["near_clusters"] == 1 and stats["cluster_sizes"] == [{"size": "3-4", "clusters": 1}]
    assert [(p["pass"], p["docs_in"], p["duplicates"], p["docs_out"]) for p in stats["passes"]] == [
        ("url", 6, 1, 5), ("exact", 5, 1, 4), ("near", 4, 2, 2)]


def test_keep_rule_earliest_fetch(tmp_path, spark_config):
    text = "the same page fetched on two days with a lot of words in it " * 5
    days = [datetime(2026, 1, d, tzinfo=timezone.utc) for d in (3, 1, 2)]
    _, kept, rejected = run_stage(tmp_path, make_docs([text, text + "!", text.upper()], fetched=days),
                                  DedupeConfig(keep="earliest"), spark_config)
    assert [r["id"] for r in kept] == ["d1"]
    assert {r["dup_of"] for r in rejected} == {"d1"}


def test_empty_input_is_a_clear_error(tmp_path, spark_config):
    write_documents(make_docs([]), tmp_path / "in")
    with pytest.raises(StageError, match=r"\[dedupe\] no input documents"):
        dedupe(DedupeConfig(), spark_config, tmp_path / "in", tmp_path / "out")


def test_bad_input_loses_nothing(shared_run, shared_data):
    """Empty, one-word, junk-character, identical and 10 MB documents: each kept or
    rejected with a reason, and the big one costs no crash. (Their URLs all differ: the URL
    pass, on in the shared run, has nothing to find among them.)"""
    texts, _ = bad_group(shared_data)
    kept, rejected = shared_run.group("b-")
    assert sorted(r["id"] for r in kept + rejected) == sorted(f"d{i}" for i in range(len(texts)))
    assert all(r["reason"] for r in rejected)
    identical = {f"d{i}" for i in range(7, 12)}
    assert {r["id"] for r in kept} & identical == {"d10"}, "the smallest id of equally long copies"
    assert {r["id"] for r in rejected} >= identical - {"d10"} | {"d3"}
    assert "d6" in {r["id"] for r in kept}, "the 10 MB document"
    assert shared_run.stats["docs_in"] == shared_run.docs_in, "every document counted, the bad ones too"


@pytest.fixture(scope="module")
def week1(shared_data, spark_config, tmp_path_factory):
    """Week 1 of a weekly crawl (default settings): a judged page and a story. The tests that
    name it in ``against`` only read its output."""
    pair = next(r for r in judged_pairs(shared_data, 0.97, 1.0) if r["src_doc"].split() != r["target_doc"].split())
    story = "a completely different short document about cats and dogs " * 10
    root = tmp_path_factory.mktemp("week1")
    _, kept, _ = run_stage(root, make_docs([pair["src_doc"], story], ["http://a/page", "http://a/cats"]), DedupeConfig(),
                           spark_config)
    return {"out": root / "out", "kept": kept, "pair": pair, "story": story}


def test_incremental_run_rejects_what_an_earlier_output_accepted(tmp_path, shared_data, spark_config, week1):
    """Week 2 names week 1's output: a page week 1 accepted (same URL, same text, or a near
    copy) is rejected as earlier_*, with dup_of = the week-1 id; new pages and week 2's own
    duplicates behave as in one run; week 1's documents are never written again."""
    pair, story = week1["pair"], week1["story"]
    other = next(r for r in judged_pairs(shared_data, 0.97, 1.0) if r["src_doc"][:200] != pair["src_doc"][:200])
    assert [r["id"] for r in week1["kept"]] == ["d0", "d1"]
    index = read_documents(week1["out"] / INDEX_DIR)
    assert index.column_names == ["id", "url_key", "hash", "sig", "bands"] and index.num_rows == 2

    texts = [pair["target_doc"], story.upper(), "fresh text " * 3 + other["src_doc"], other["src_doc"],
             "new page at an old address " * 10]
    urls = ["http://b/1", "http://b/2", "http://b/3", "http://b/4", "HTTP://A/page/"]
    config = DedupeConfig(against=[str(week1["out"])])
    stats, kept, rejected = run_stage(tmp_path / "w2", make_docs(texts, urls), config, spark_config)
    by_id = {r["id"]: r for r in rejected}
    # Ids restart at d0 in week 2 (make_docs): week 1's d0/d1 are the pages week 2 repeats.
    assert (by_id["d4"]["reason"], by_id["d4"]["dup_of"]) == ("earlier_url_duplicate", "d0")
    assert (by_id["d1"]["reason"], by_id["d1"]["dup_of"]) == ("earlier_exact_duplicate", "d1")
    assert (by_id["d0"]["reason"], by_id["d0"]["dup_of"], by_id["d0"]["rule"]) == (
        "earlier_near_duplicate", "d0", "near_dedupe")
    assert by_id["d0"]["reason_value"] >= 0.8
    assert [r["id"] for r in kept] == ["d2"], "the longer of week 2's own near pair, new to week 1"
    assert (by_id["d3"]["reason"], by_id["d3"]["dup_of"]) == ("near_duplicate", "d2")
    assert stats["earlier_duplicates"] == 3 and stats["docs_in"] == 5 and stats["docs_out"] == 1
    assert [(p["pass"], p["duplicates"], p["earlier_duplicates"]) for p in stats["passes"]] == [
        ("url", 0, 1), ("exact", 0, 1), ("near", 1, 1)]


def test_earlier_output_with_other_settings_is_a_config_error(tmp_path, spark_config, week1):
    earlier = str(week1["out"])  # built with the default settings (num_perm 128)
    write_documents(make_docs(["another page"], ["http://y/1"]), tmp_path / "in")
    with pytest.raises(ConfigError, match=r"num_perm: 128 there, 64 here"):
        dedupe(DedupeConfig(num_perm=64, against=[earlier]), spark_config, tmp_path / "in", tmp_path / "out")
    with pytest.raises(ConfigError, match="not a dedupe output with an index"):
        dedupe(DedupeConfig(against=[str(tmp_path / "in")]), spark_config, tmp_path / "in", tmp_path / "out2")
    # Exact and URL passes alone only need the same normal form.
    dedupe(DedupeConfig(near=False, num_perm=64, against=[earlier]), spark_config, tmp_path / "in", tmp_path / "out3")
    write_documents(make_docs([week1["story"]], ["http://y/2"]), tmp_path / "again")  # a page week 1 accepted
    with pytest.raises(StageError, match="nothing new to add"):
        dedupe(DedupeConfig(against=[earlier]), spark_config, tmp_path / "again", tmp_path / "out4")


def test_earlier_outputs_enter_the_stage_key(tmp_path):
    from llm_core.dedup import STAGE

    # The key reads the index files' bytes (no Spark): two indexes that differ are enough.
    for week in ("w1", "w2"):
        (tmp_path / week / "out" / INDEX_DIR).mkdir(parents=True)
        (tmp_path / week / "out" / INDEX_DIR / "part-0.parquet").write_bytes(week.encode())
    codes = [STAGE.code(PipelineConfig(dedupe={"against": against}))
             for against in ([], [str(tmp_path / "w1" / "out")], [str(tmp_path / "w2" / "out")])]
    assert len({json.dumps(c, sort_keys=True) for c in codes}) == 3
    with pytest.raises(ConfigError, match="does not exist"):
        STAGE.code(PipelineConfig(dedupe={"against": [str(tmp_path / "nowhere")]}))


STANDALONE_RUN = """
import sys
from pathlib import Path
from llm_core.config import DedupeConfig, SparkConfig
from llm_core.dedup import dedupe
master, docs, out = sys.argv[1:]
spark = SparkConfig(master=master, conf={"spark.ui.enabled": "false", "spark.driver.host": "127.0.0.1",
                                         "spark.executor.memory": "1g", "spark.sql.shuffle.partitions": "4"})
dedupe(DedupeConfig(verify_exact=True), spark, Path(docs), Path(out))
"""


@pytest.mark.slow
def test_standalone_cluster_gives_the_local_result(shared_run, tmp_path, spark_standalone):
    """The same stage code on a real standalone master + worker (127.0.0.1) as on local[2]:
    the same documents kept and the same verdicts for the rest. The input is the shared run's
    (judged pairs with an exact copy and a URL duplicate, the keeper cases, the bad documents),
    its local result the shared run's output."""
    import subprocess
    import sys

    assert DedupeConfig(verify_exact=True) == DedupeConfig(), "the shared run's settings"
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    done = subprocess.run([sys.executable, "-c", STANDALONE_RUN, spark_standalone, str(shared_run.docs),
                           str(tmp_path / "cluster")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    def verdicts(out):
        kept = read_documents(out / DOCS_DIR, ["id", "dup_cluster"]).to_pylist()
        rejected = read_documents(out / REJECTED_DIR, ["id", "reason", "dup_of", "dup_cluster"]).to_pylist()
        return sorted(tuple(r.values()) for r in kept), sorted(tuple(r.values()) for r in rejected)

    local, cluster = verdicts(shared_run.out), verdicts(tmp_path / "cluster")
    assert local == cluster
    reasons = {reason for doc, reason, _, _ in local[1] if doc.startswith("s-")}
    assert reasons == {"url_duplicate", "exact_duplicate", "near_duplicate"}, reasons


def test_keeper_of_an_exact_group_that_is_a_near_duplicate_passes_its_copies_on(shared_run):
    """m and z are exact copies, m is kept by the exact pass, then m loses the near pass to
    the longer b: z must then name b (a kept document) and share b's cluster."""
    kept, rejected = shared_run.group("k-")
    assert [(r["id"], r["dup_cluster"]) for r in kept] == [("b", "b")]
    assert sorted((r["id"], r["reason"], r["dup_of"], r["dup_cluster"]) for r in rejected) == [
        ("m", "near_duplicate", "b", "b"), ("z", "exact_duplicate", "b", "b")]


def test_copies_of_a_keeper_share_the_cluster_it_ends_in(shared_run):
    """m is kept over its exact copy z, then kept again over its near copy b: z and b are
    in one cluster with m."""
    kept, rejected = shared_run.group("c-")
    assert [(r["id"], r["dup_cluster"]) for r in kept] == [("m", "b")]
    assert sorted((r["id"], r["dup_of"], r["dup_cluster"]) for r in rejected) == [("b", "m", "b"), ("z", "m", "b")]
