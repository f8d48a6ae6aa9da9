"""MinHash signatures: the sha1 path is datasketch's; the fast default (fmix64) is
datasketch's MinHash with another hash function, over the very same shingle sets.

All on real documents: Webis CopyCat page pairs, Lingua sentences in 75 languages,
classical Chinese poetry, a Japanese novel, Shakespeare.
"""

import json
import tracemalloc
from functools import partial

import numpy as np
import pytest
from datasketch import MinHash

from llm_core.dedup import minhash
from llm_core.dedup.minhash import MAX32, jaccard, shingle_hash32, text_signatures
from llm_core.dedup.shingles import shingles, token_spans, tokens


def webis_texts(shared_data, pairs):
    rows = (json.loads(line) for line in (shared_data / "neardup_webis_copycat_canonical_edges" / "pairs.jsonl").open())
    return [text for _, row in zip(range(pairs), rows) for text in (row["src_doc"], row["target_doc"])]


def multilingual_texts(shared_data, lines_per_language=40, languages="*"):
    """Sentences of 75 languages (Thai, Japanese and Chinese among them: scripts without
    spaces), classical Chinese, a Japanese novel: one text per language or work."""
    texts = [" ".join(path.read_text(encoding="utf-8").splitlines()[:lines_per_language])
             for path in sorted((shared_data / "langid_lingua_testdata" / "sentences").glob(f"{languages}.txt"))]
    poems = json.loads((shared_data / "text_zh_chinese_poetry" / "楚辞" / "chuci.json").read_text(encoding="utf-8"))
    novel = (shared_data / "text_sentencepiece_novels" / "wagahaiwa_nekodearu.txt").read_text(encoding="utf-8")
    return texts + ["\n".join(p["content"]) for p in poems[:20]] + [novel[:5000]]


EDGE_TEXTS = ["", None, "!!! ...", "one", "one two", "a b c d e", "bad \ud800 surrogate\x00and\x07control", "ab我cd_ef"]


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
@pytest.mark.parametrize("kind", ["word", "char"])
def test_sha1_path_equals_datasketch_update_batch(shared_data, scheme, kind):
    texts = webis_texts(shared_data, 10) + EDGE_TEXTS
    ours, has = text_signatures(texts, num_perm=128, seed=7, scheme=scheme, shingle=kind, shingle_hash="sha1")
    for text, sig, has_shingles in zip(texts, ours, has):
        m = MinHash(num_perm=128, seed=7, scheme=scheme)
        m.update_batch(sorted(shingles(text, 5, kind)))
        assert (sig == m.hashvalues.astype(np.uint32)).all()
        assert has_shingles == bool(shingles(text, 5, kind))


@pytest.mark.parametrize("kind,size,scheme", [("word", 5, "affine32"), ("word", 1, "legacy"),
                                              ("char", 5, "affine32"), ("char", 2, "legacy")])
def test_fast_path_is_datasketch_with_its_own_hash(shared_data, monkeypatch, kind, size, scheme):
    """Bit for bit: the windows hashed in numpy are exactly the shingle sets (as multisets),
    and permutations and minimum are datasketch's. Small chunks, so chunk boundaries cut
    documents and tokens. (datasketch calls ``shingle_hash32`` once per shingle: few texts.)"""
    monkeypatch.setattr(minhash, "CHUNK", 509)
    monkeypatch.setattr(minhash, "TOKEN_CHUNK", 997)
    texts = ([t[:2000] for t in webis_texts(shared_data, 2)] + EDGE_TEXTS
             + multilingual_texts(shared_data, 1, "[aejkrtz]?"))  # Arabic, Greek, Japanese, Korean, Thai...
    sets = [shingles(t, size, kind) for t in texts]
    ours, has = text_signatures(texts, num_perm=64, seed=3, scheme=scheme, shingle=kind, shingle_size=size)
    theirs = MinHash.bulk(sets, num_perm=64, seed=3, scheme=scheme, hashfunc=partial(shingle_hash32, kind=kind))
    assert (ours == np.array([m.hashvalues for m in theirs]).astype(np.uint32)).all()
    assert has.tolist() == [bool(s) for s in sets]


@pytest.mark.parametrize("nfkc", [False, True])
def test_token_spans_are_the_regex_tokens(shared_data, nfkc):
    """The vectorised tokenizer classifies every code point as ``shingles._TOKEN`` does, alone
    and next to each other, and finds the same tokens in real text of 75 languages."""
    every = "".join(map(chr, range(0x110000)))
    texts = [every, " ".join(every)] + multilingual_texts(shared_data) + webis_texts(shared_data, 5) + EDGE_TEXTS
    points, starts, ends, counts = token_spans(texts, nfkc)
    joined = points.tobytes().decode("utf-32-le", "surrogatepass")
    found = [joined[s:e] for s, e in zip(starts.tolist(), ends.tolist())]
    expected = [tokens(t, nfkc) for t in texts]
    assert counts.tolist() == [len(t) for t in expected]
    assert found == [w for ws in expected for w in ws]


def test_fast_estimate_agrees_with_datasketch_on_real_pairs(shared_data):
    """The fast hash estimates Jaccard as well as datasketch's SHA-1 does, with no bias.

    Measured on all 480 Webis CopyCat pairs (word 5-grams, 128 permutations, seed 1; exact
    Jaccard 0.24-1.0, median 0.60): mean |estimate - exact| 0.0299 (datasketch 0.0289), mean
    signed error +0.0010 (datasketch -0.0026), mean squared z-score (error over the binomial
    standard deviation sqrt(J(1-J)/128)) 0.98 (datasketch 0.92), mean |ours - datasketch|
    0.041 (two independent estimates). Character 5-grams: 0.0269 vs 0.0280, z^2 1.03 vs 1.03.
    On the first 200 pairs checked here the bounds leave room for sampling noise."""
    texts = webis_texts(shared_data, 200)
    sets = [shingles(t, 5) for t in texts]
    exact = np.array([len(a & b) / len(a | b) for a, b in zip(sets[::2], sets[1::2])])
    ours, _ = text_signatures(texts, num_perm=128, seed=1)
    theirs = np.array([m.hashvalues for m in MinHash.bulk(sets, num_perm=128, seed=1)]).astype(np.uint32)
    errors = {"ours": jaccard(ours[::2], ours[1::2]) - exact, "datasketch": jaccard(theirs[::2], theirs[1::2]) - exact}
    middle = (exact > 0.02) & (exact < 0.98)
    sd = np.sqrt(exact[middle] * (1 - exact[middle]) / 128)
    for err in errors.values():
        assert np.abs(err).mean() < 0.04
        assert abs(err.mean()) < 0.01
        assert 0.7 < np.mean((err[middle] / sd) ** 2) < 1.4
    assert abs(np.abs(errors["ours"]).mean() - np.abs(errors["datasketch"]).mean()) < 0.01


@pytest.mark.parametrize("kind", ["word", "char"])
def test_edge_cases(kind):
    sigs, has = text_signatures(["", None, "!!! ...", "one", "bad \ud800 surrogate\x00and\x07control",
                                 "bad surrogate and control"], shingle=kind)
    assert (sigs[:3] == MAX32).all() and has.tolist() == [False, False, False, True, True, True]
    # Shorter than one shingle: one shingle of all it has.
    short = MinHash(num_perm=128, seed=1, hashfunc=partial(shingle_hash32, kind=kind))
    short.update(b"one")
    assert (sigs[3] == short.hashvalues.astype(np.uint32)).all()
    # Lone surrogates and control characters are separators, nothing more.
    assert (sigs[4] == sigs[5]).all()
    with pytest.raises(ValueError, match="shingle hash"):
        text_signatures(["one"], shingle_hash="md5")


def test_a_10_mb_document_is_signed_in_bounded_memory(shared_data):
    """Measured: ~140 MiB traced at the peak for 10 MB of Shakespeare (2M tokens), most of
    it the text and its code points; the sha1 path holds every shingle as bytes instead."""
    text = (shared_data / "text_tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    page = (text * (10_000_000 // len(text) + 1))[:10_000_000]
    tracemalloc.start()
    try:
        sigs, has = text_signatures([page, "short"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert has.all() and (sigs[0] < MAX32).all()
    assert peak < 512 * 2**20
