"""Dedupe: near-duplicate accuracy, signature speed against datasketch, the stage against
datatrove's MinHash pipeline, and how time and memory grow with the corpus.

On real text from the shared folder (``LLMPIPE_SHARED_DATA``, default ``../shared/data``);
nothing is copied into the repository (corpora, stage inputs and outputs live in a temporary
directory under /tmp, removed at the end).

1. Corpus. Real documents: WikiText-2 paragraphs (raw test split and the valid split of the
   PyTorch example, different articles), web pages whose main text our crawler's extraction
   (``llm_core.crawl.extract``, trafilatura) takes from the saved pages of the extraction test
   sets, CCNet's Common Crawl documents, chunks of Gutenberg-style novels (Botchan in English,
   Wagahai wa Neko de Aru in Japanese), of Tiny Shakespeare and of the NLTK State of the Union
   and inaugural speeches. A corpus of N documents is (1 - ``--dup-share``) originals (the real
   units in a seeded order; past the pool, documents of real sentences drawn at random from one
   source, as long as one of its units) and near-duplicate
   copies of some originals (1-4 copies each), each copy edited at one known rate (0.2% to 20%
   of its words, of its characters for Japanese) by one kind of edit: word deletions,
   substitutions, insertions, all three mixed, appended boilerplate (that many words of footer
   text), or a pure reformat (case, punctuation, whitespace: an exact duplicate once
   normalised). URLs are all different (the URL pass finds nothing).
2. Truth: every pair whose exact Jaccard similarity of the configured shingles
   (``shingles.shingles``: word 5-grams by default) is >= the threshold (0.8), found by
   brute force with prefix filtering (an exact all-pairs join: pairs that share no token of
   the rarest ``n - ceil(t n) + 1`` of each other's shingles cannot reach t) and verified on
   the full shingle sets (shingles compared by a 64-bit hash; a collision is ~1e-5 likely in
   the whole corpus).
3. The stage (``dedupe``, default ``DedupeConfig``, default ``SparkConfig``: ``local[*]``) runs
   in a child process that does nothing else, so the memory is the stage's: the peak of the
   summed RSS of that process tree (the Python driver, the Spark JVM, the Python workers;
   pages that forked workers share count in each), sampled every 0.1 s. The Spark
   session is started before the clock (its time is reported apart); the 960 CopyCat documents
   run first, which also warms the Python workers. Sizes: ``--sizes`` (default 10k, 100k),
   ``--large`` adds 1M (stage only unless ``--accuracy-max`` allows it).
   A pair is *declared* a duplicate when both documents end in the same output cluster:
   ``dup_cluster`` of ``docs/`` and ``rejected/``. Clusters are connected components, so a pair
   can be declared whose own similarity is below the threshold (A~B, B~C, A!~C): such pairs
   count as false positives. Precision and recall are over all pairs of the corpus; the
   "direct" precision is that of the (document, ``dup_of``) pairs the stage wrote. The same
   figures with clusters linked through ``dup_of`` as well (``linked``) are reported beside: a
   document rejected by the exact pass keeps that pass's cluster id even when its kept twin then
   joins a near-duplicate cluster with another id, so ``dup_cluster`` alone can split one group.
   Headline precision / recall / F1: the largest corpus scored (100k by default).
   Per edit rate and kind: the (original, copy) pairs. An edit rate is of the copy's words,
   at least one edit, so a 50-word paragraph with one edit is ~0.83 similar whatever its rate.
   What-if (``--what-if-size``, default the first size): the stage's near-duplicate logic
   (band keys, candidate buckets, the full-signature estimate, optionally the exact Jaccard,
   connected components) replayed in numpy on the same signatures with other bands / rows,
   thresholds and 256 permutations, scored the same way; the replay of the default settings
   must give the stage's own "linked" F1 (``stage_linked_f1`` beside it), which checks the replay.
4. CopyCat (``neardup_webis_copycat_canonical_edges``): the 480 judged page pairs' 960 texts
   through the stage; each pair declared or not, against the human label and against the
   Jaccard truth. The label scale is not documented: it is ordinal (the median S3 score rises
   0.5 < 1 < 2 < 3), so a pair counts as a duplicate when its label is >= 2 (also reported:
   == 3, and the declared share per label); "unknown" pairs are left out.
5. Signatures, one process, one core: ``minhash.text_signatures(texts)`` (its defaults) vs
   datasketch ``MinHash.bulk`` on ``shingles.shingles`` sets of the same documents, best of
   ``--rounds`` interleaved rounds; the ratio with datasketch's shingling counted (text to
   signature on both sides: the headline) and without it.
6. datatrove 0.10.1's MinHash pipeline (Signature -> Buckets -> Cluster -> Filter, each a
   ``LocalPipelineExecutor`` with as many workers as cores; ParquetReader of the same
   documents split in as many files; kept and removed documents written as Parquet, as the
   stage writes both) on the same corpus (``--datatrove-docs``, default the first size), in a
   child process measured the same way; its clusters scored against the same truth.
   Equivalent settings: word 5-grams, the stage's bands x rows (so 117 of 128 hashes at 0.8),
   seed 1. Both run ``--repeats`` times (default 2: the stage's runs on that corpus are its
   second and last jobs) and the ratio takes the best of each. What differs: datatrove
   tokenizes with spaCy's blank English tokenizer after its own normalisation (numbers folded
   to 0, diacritics removed), hashes shingles to 64 bits (its default xxhash when an xxhash
   that takes str is installed, else sha1: the bench extra has no xxhash and xxhash >= 4
   refuses str), declares a pair on one equal band (no verification on the full signature),
   has no exact pass, and texts of fewer than 5 tokens get no signature.

The last line printed is one JSON object of all figures (``precision``, ``recall``, ``f1``,
``signature_speedup_vs_datasketch``, ``stage_speedup_vs_datatrove`` = datatrove's time /
ours, ``docs_per_s`` at the largest size, and their detail); progress goes to stderr.
Default size: a corpus of 10k and one of 100k documents, ~5 minutes on 2 idle cores.
Usage: .venv/bin/python benchmarks/dedup.py [--sizes 10000,100000] [--large] [--dup-share 0.3]
       [--pages 200] [--sig-docs 5000] [--rounds 3] [--datatrove-docs N] [--accuracy-max N]
       [--no-datatrove] [--repeats 2] [--what-if-size N] [--seed 0]
"""

from __future__ import annotations

import argparse
import gc
import glob
import gzip
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from support import log, rounded, shared_data  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from llm_core.dedup.config import DedupeConfig  # noqa: E402
from llm_core.dedup.shingles import shingles  # noqa: E402
from llm_core.documents import DOCUMENT_SCHEMA, document_id, write_documents  # noqa: E402

EDIT_RATES = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)
EDIT_KINDS = ("delete", "substitute", "insert", "mixed", "append")
REFORMAT_SHARE = 0.05  # copies that are exact duplicates once normalised (case, punctuation, spaces)
# Footer text appended by the "append" edit (the kind of boilerplate a site adds to every page).
BOILERPLATE = (
    "Share this article on Facebook Twitter LinkedIn or by email. Subscribe to our newsletter to get the "
    "latest stories delivered to your inbox every morning. We use cookies to improve your experience on our "
    "site and to show you relevant advertising. By continuing to browse you agree to our use of cookies. "
    "Read our privacy policy and terms of service for more information. All rights reserved. Contact us "
    "about advertising, careers, press enquiries or corrections. Follow us on social media. Sign up for free "
    "to read more articles like this one and join the conversation in the comments below. Related articles: "
    "most read this week, editor's picks, trending now. Back to top. Skip to main content. Accessibility "
    "statement. Manage cookie preferences. Do not sell my personal information. Copyright notice. Sitemap."
).split()


def fmt(value, width: int = 6) -> str:
    return f"{value:{width}.3f}" if isinstance(value, float) else f"{'-':>{width}s}"



# --- memory of a process tree -------------------------------------------------------------------
def tree_rss(pid: int | None = None) -> tuple[int, int]:
    """(summed RSS in bytes, processes) of ``pid`` (default this process) and all its descendants."""
    import psutil

    try:
        root = psutil.Process(pid or os.getpid())
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total, len(procs)


class PeakRSS:
    """Samples ``tree_rss`` in a thread every ``interval`` s while in the ``with`` block."""

    def __init__(self, interval: float = 0.1):
        self.interval, self.peak, self.processes = interval, 0, 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, n = tree_rss()
            if rss > self.peak:
                self.peak, self.processes = rss, n
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRSS":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# --- 1. real text ----------------------------------------------------------------------------------
def _chunks(words: list[str], lo: int, hi: int, rng: random.Random, sep: str = " ") -> list[str]:
    out, i = [], 0
    while i < len(words):
        n = rng.randint(lo, hi)
        piece = words[i : i + n]
        if len(piece) >= lo // 2:
            out.append(sep.join(piece))
        i += n
    return out


def _wikitext_paragraphs(path: Path, min_words: int = 40) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("="):
            continue
        # WikiText's tokenisation of '-', ',' and '.' inside words, undone.
        line = line.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
        if len(line.split()) >= min_words:
            out.append(line)
    return out


def _extract(args: tuple[str, bytes]) -> str | None:
    from llm_core.crawl.extract import extract_document

    url, body = args
    try:
        doc = extract_document(body, url)
    except Exception:  # noqa: BLE001 (a page the extractor cannot parse is skipped)
        return None
    return doc["text"] if doc and doc.get("text") else None


def _web_pages(data: Path, limit: int, workers: int) -> list[str]:
    """Main text of up to ``limit`` saved pages (each set in turn), by our crawler's extraction."""
    patterns = ("html_trafilatura/eval/*.html.gz", "html_scrapinghub_aeb/html/*.html.gz",
                "html_trafilatura/cache/*.html", "html_mozilla_readability/test-pages/*/source.html")
    sets = [sorted(glob.glob(str(data / p))) for p in patterns]
    pages: list[tuple[str, bytes]] = []
    for i in range(max(map(len, sets))):
        for paths in sets:
            if i < len(paths) and len(pages) < limit:
                body = Path(paths[i]).read_bytes()
                body = gzip.decompress(body) if paths[i].endswith(".gz") else body
                pages.append(("https://pages.invalid/" + Path(paths[i]).relative_to(data).as_posix(), body))
    if not pages:
        return []
    with ProcessPoolExecutor(workers) as pool:
        texts = list(pool.map(_extract, pages, chunksize=8))
    return [t for t in texts if t and len(t.split()) >= 30]


def load_units(data: Path, pages: int, workers: int, seed: int) -> list[tuple[str, str]]:
    """(source, text) of every real unit, exact duplicate texts once, in a seeded order."""
    rng = random.Random(seed)
    units: list[tuple[str, str]] = []
    units += [("wikitext", t) for t in _wikitext_paragraphs(data / "text_wikitext2_raw_test" / "wikitext-test.txt")]
    units += [("wikitext_valid", t) for t in
              _wikitext_paragraphs(data / "text_wikitext2_pytorch_examples" / "valid.txt")]
    for path in sorted((data / "text_ccnet_en_head_dolma").glob("*.jsonl")):
        rows = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
        units += [("ccnet", r["text"]) for r in rows if r.get("text")]
    botchan = (data / "text_sentencepiece_novels" / "botchan.txt").read_text(encoding="utf-8").split()
    units += [("novel_en", t) for t in _chunks(botchan, 150, 400, rng)]
    neko = "".join((data / "text_sentencepiece_novels" / "wagahaiwa_nekodearu.txt").read_text(encoding="utf-8").split())
    units += [("novel_ja", t) for t in _chunks(list(neko), 300, 900, rng, sep="")]
    shakespeare = (data / "text_tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    units += [("shakespeare", t) for t in _chunks(shakespeare.split(" "), 150, 400, rng)]
    for name in ("state_union", "inaugural"):
        with zipfile.ZipFile(data / "nltk_data_corpora" / f"{name}.zip") as zf:
            for member in sorted(n for n in zf.namelist() if n.endswith(".txt")):
                words = zf.read(member).decode("utf-8", "replace").split(" ")
                units += [("speeches", t) for t in _chunks(words, 150, 400, rng)]
    started = time.perf_counter()
    web = _web_pages(data, pages, workers)
    log(f"  extracted {len(web)} web pages of {pages} in {time.perf_counter() - started:.1f}s")
    units += [("web", t) for t in web]
    seen, out = set(), []
    for source, text in units:
        if text not in seen:
            seen.add(text)
            out.append((source, text))
    rng.shuffle(out)
    return out


# --- 2. corpus with injected near duplicates ------------------------------------------------------
@dataclass
class Corpus:
    texts: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    origin: list[int] = field(default_factory=list)  # index of the original of a copy, -1 for an original
    kind: list[str] = field(default_factory=list)  # edit kind of a copy, "" for an original
    rate: list[float] = field(default_factory=list)

    def add(self, text: str, source: str, origin: int = -1, kind: str = "", rate: float = 0.0) -> None:
        self.texts.append(text)
        self.sources.append(source)
        self.origin.append(origin)
        self.kind.append(kind)
        self.rate.append(rate)

    def __len__(self) -> int:
        return len(self.texts)


_SENTENCE = re.compile(r"(?<=[.!?。！？])\s*|\n+")


def _is_cjk(text: str) -> bool:
    """Written without spaces: edits then work on characters (each is a token of ours)."""
    return len(text.split()) * 20 < len(text)


def edit_text(text: str, kind: str, rate: float, rng: random.Random, vocab: list[str]) -> str:
    if kind == "reformat":
        words = text.split(" ")
        out = []
        for w in words:
            r = rng.random()
            out.append(w.upper() if r < 0.1 else w.capitalize() if r < 0.2 else w)
            out.append(rng.choice(("  ", "\n", " , ", " ")) if rng.random() < 0.05 else " ")
        return "".join(out).strip() + rng.choice((".", "!", " ..."))
    cjk = _is_cjk(text)
    units = list(text) if cjk else text.split()
    n = max(1, round(rate * len(units)))
    if kind == "append":
        start = rng.randrange(len(BOILERPLATE))
        return text + "\n\n" + " ".join(BOILERPLATE[(start + i) % len(BOILERPLATE)] for i in range(n))
    pick = (lambda: rng.choice(units)) if cjk else (lambda: rng.choice(vocab))
    counts = {kind: n} if kind != "mixed" else dict(zip(("delete", "substitute", "insert"),
                                                        np.random.default_rng(rng.randrange(2**32))
                                                        .multinomial(n, [1 / 3] * 3).tolist()))
    units = list(units)
    for op, k in counts.items():
        for _ in range(k):
            if op == "delete" and len(units) > 1:
                del units[rng.randrange(len(units))]
            elif op == "substitute":
                units[rng.randrange(len(units))] = pick()
            elif op == "insert":
                units.insert(rng.randrange(len(units) + 1), pick())
    return "".join(units) if cjk else " ".join(units)


def build_corpus(units: list[tuple[str, str]], size: int, dup_share: float, seed: int) -> Corpus:
    """``size`` documents: originals (real units, then documents of real sentences), then copies, shuffled."""
    rng = random.Random(seed * 1_000_003 + size)
    vocab = [w for _, t in units[:2000] if not _is_cjk(t) for w in t.split()][:200_000]
    n_copies = round(size * dup_share)
    n_orig = size - n_copies
    originals = Corpus()
    for i in range(min(n_orig, len(units))):
        originals.add(units[i][1], units[i][0])
    if n_orig > len(units):
        # Past the pool: documents of real sentences drawn at random from one source's sentences,
        # as long as one of that source's units (two such share a sentence now and then, never
        # most of their text: no near duplicates but the injected ones).
        pools: dict[str, list[str]] = defaultdict(list)
        lengths: dict[str, list[int]] = defaultdict(list)
        for source, text in units:
            pools[source] += [x for x in _SENTENCE.split(text) if x.strip()]
            lengths[source].append(len(text))
        sources = [source for source, _ in units]
        for _ in range(n_orig - len(units)):
            source = rng.choice(sources)
            target, parts, n = rng.choice(lengths[source]), [], 0
            while n < target:
                parts.append(rng.choice(pools[source]))
                n += len(parts[-1]) + 1
            originals.add(("" if source == "novel_ja" else " ").join(parts), f"{source}_sentences")
    # Copies: originals drawn without replacement, 1-4 copies each (about 1.6 on average).
    order = list(range(n_orig))
    rng.shuffle(order)
    copies: list[tuple[int, str, float]] = []
    for o in order:
        if len(copies) >= n_copies:
            break
        k = 1
        while k < 4 and rng.random() < 0.4:
            k += 1
        for _ in range(min(k, n_copies - len(copies))):
            if rng.random() < REFORMAT_SHARE:
                copies.append((o, "reformat", 0.0))
            else:
                copies.append((o, rng.choice(EDIT_KINDS), rng.choice(EDIT_RATES)))
    corpus_order = list(range(n_orig + len(copies)))
    rng.shuffle(corpus_order)  # position of each document in the corpus
    corpus = Corpus()
    slots: list[tuple | None] = [None] * len(corpus_order)
    for new, old in enumerate(corpus_order):
        slots[new] = old
    # Original i lands at position pos[i]; a copy's origin refers to that position.
    pos = {old: new for new, old in enumerate(corpus_order)}
    for old in slots:
        if old < n_orig:
            corpus.add(originals.texts[old], originals.sources[old])
        else:
            o, kind, rate = copies[old - n_orig]
            corpus.add(edit_text(originals.texts[o], kind, rate, rng, vocab), originals.sources[o], pos[o], kind, rate)
    return corpus


def write_corpus(corpus: Corpus, directory: Path, files: int, prefix: str = "doc") -> list[str]:
    """The corpus as documents in ``files`` Parquet files (one per core); returns the ids."""
    urls = [f"https://bench.invalid/{prefix}/{corpus.sources[i]}/{i}" for i in range(len(corpus))]
    ids = [document_id(u) for u in urls]
    table = pa.Table.from_pydict(
        {"id": ids, "url": urls, "source": corpus.sources, "fetched_at": [None] * len(corpus), "text": corpus.texts,
         "title": [None] * len(corpus), "lang": [None] * len(corpus), "lang_score": [None] * len(corpus)},
        schema=DOCUMENT_SCHEMA)
    size = -(-table.num_rows // files)
    for i in range(files):
        write_documents(table.slice(i * size, size), directory, name=f"part-{i:05d}.parquet")
    return ids


# --- 3. truth: exact Jaccard by brute force (prefix-filtered all-pairs join) ------------------------
def group_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``keys`` sorted: the positions (i, j), i < j, of every pair of equal keys, vectorised."""
    if len(keys) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    group_end = np.repeat(ends, ends - starts)
    after = group_end - np.arange(len(keys)) - 1  # members after each position in its group
    first = np.repeat(np.arange(len(keys)), after)
    block_start = np.repeat(np.cumsum(after) - after, after)
    second = first + (np.arange(len(first)) - block_start) + 1
    return first, second


_M64 = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of uint64, so distinct inputs stay distinct."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _token_hashes(args: tuple[list[str], bool]) -> list[np.ndarray]:
    from llm_core.dedup.shingles import tokens

    texts, nfkc = args
    return [np.fromiter(map(hash, tokens(t, nfkc)), dtype=np.int64) for t in texts]


def _word_shingle_hashes(texts: list[str], size: int, nfkc: bool) -> tuple[np.ndarray, np.ndarray]:
    """(flat 64-bit hashes of every word ``size``-gram, per-document counts): the n-grams of
    ``shingles.tokens`` as ``shingles.shingles`` makes them (a text of fewer than ``size`` words
    is one shingle of all its words, no words no shingle), hashed in numpy instead of joined in
    Python (~10x faster on 100k documents). Equal n-grams hash equal; distinct ones collide
    with probability ~2**-64 per pair."""
    import multiprocessing

    workers = os.cpu_count() or 1
    step = -(-len(texts) // (workers * 4)) or 1
    chunks = [(texts[i : i + step], nfkc) for i in range(0, len(texts), step)]
    # Forked workers: str hashes are salted per process, and a fork keeps the parent's salt.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        per_doc = [a for part in pool.map(_token_hashes, chunks) for a in part]
    lengths = np.fromiter((len(x) for x in per_doc), dtype=np.int64, count=len(per_doc))
    flat = _mix64(np.concatenate(per_doc).view(np.uint64)) if len(per_doc) else np.zeros(0, np.uint64)
    del per_doc
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    out, counts = [], np.zeros(len(texts), dtype=np.int64)
    with np.errstate(over="ignore"):
        if len(flat) >= size:
            h = np.zeros(len(flat) - size + 1, dtype=np.uint64)
            for j in range(size):  # polynomial over the n-gram's token hashes
                h = h * _M64 + flat[j : len(flat) - size + 1 + j]
            doc = np.repeat(np.arange(len(texts)), lengths)[: len(h)]
            valid = (np.arange(len(h)) - starts[doc]) <= lengths[doc] - size  # n-gram inside one document
            out.append(h[valid])
            counts += np.bincount(doc[valid], minlength=len(texts))
        short = np.flatnonzero((lengths > 0) & (lengths < size))
        if len(short):  # one shingle of all the words, salted by the length (differs from any n-gram)
            h = np.array([np.uint64(0xD1B54A32D192ED03) * np.uint64(n) for n in lengths[short]], dtype=np.uint64)
            for j in range(size - 1):
                inside = j < lengths[short]
                h = np.where(inside, h * _M64 + flat[np.minimum(starts[short] + j, len(flat) - 1)], h)
            out.append(h)
            counts[short] = 1
    flat_h = np.concatenate(out) if out else np.zeros(0, np.uint64)
    # Put the short documents' shingles in document order with the others.
    doc_of = np.concatenate([np.repeat(np.arange(len(texts)), np.where(lengths >= size, counts, 0)),
                             short]) if len(texts) else np.zeros(0, np.int64)
    order = np.argsort(doc_of, kind="stable")
    return _mix64(flat_h[order]).view(np.int64), counts


class ShingleSets:
    """Every document's shingle set as sorted dense ids (one flat array + offsets)."""

    def __init__(self, texts: list[str], config: DedupeConfig):
        if config.shingle == "word":
            flat, counts = _word_shingle_hashes(texts, config.shingle_size, config.nfkc)
        else:  # character shingles: straight from shingles.shingles (slower)
            hashed = [np.fromiter((hash(s) for s in shingles(t, config.shingle_size, config.shingle, config.nfkc)),
                                  dtype=np.int64) for t in texts]
            counts = np.fromiter((len(h) for h in hashed), dtype=np.int64, count=len(hashed))
            flat = np.concatenate(hashed) if hashed else np.zeros(0, np.int64)
        distinct, ids = np.unique(flat, return_inverse=True)
        del flat
        # One id per distinct shingle of a document (a set), sorted within each document:
        # (document, id) packed in one int64 key, sorted once.
        n_ids = np.int64(max(len(distinct), 1))
        keys = np.sort(np.repeat(np.arange(len(texts), dtype=np.int64), counts) * n_ids + ids.reshape(-1),
                       kind="stable")  # (np.unique on these keys is ~30x slower than sort + mask)
        del ids
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys
        doc = keys // n_ids
        self.tokens = keys % n_ids
        self.sizes = np.bincount(doc, minlength=len(texts)).astype(np.int64)
        self.offsets = np.r_[0, np.cumsum(self.sizes)]
        self.freq = np.bincount(self.tokens, minlength=len(distinct))  # in how many documents

    def check(self, texts: list[str], config: DedupeConfig, sample: int = 300) -> None:
        """The sets have the sizes and overlaps ``shingles.shingles`` gives (a sample of documents)."""
        picks = list(range(0, len(texts), max(1, len(texts) // sample)))[:sample]
        ref = {i: shingles(texts[i], config.shingle_size, config.shingle, config.nfkc) for i in picks}
        for i in picks:
            assert len(ref[i]) == self.sizes[i], (i, len(ref[i]), self.sizes[i])
        for i, j in zip(picks, picks[1:]):
            a, b = ref[i], ref[j]
            expected = len(a & b) / len(a | b) if a or b else 1.0
            assert abs(self.jaccard(i, j) - expected) < 1e-12, (i, j)

    def of(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def jaccard(self, i: int, j: int) -> float:
        a, b = self.of(i), self.of(j)
        if not len(a) and not len(b):
            return 1.0
        inter = len(np.intersect1d(a, b, assume_unique=True))
        return inter / (len(a) + len(b) - inter)

    def similar_pairs(self, threshold: float) -> dict[tuple[int, int], float]:
        """Every (i, j), i < j, with Jaccard >= threshold, and its Jaccard."""
        n_docs = len(self.sizes)
        rank = np.empty_like(self.freq)
        rank[np.lexsort((np.arange(len(self.freq)), self.freq))] = np.arange(len(self.freq))  # rarest first
        n_ranks = np.int64(max(len(rank), 1))
        keys = np.sort(np.repeat(np.arange(n_docs, dtype=np.int64), self.sizes) * n_ranks + rank[self.tokens],
                       kind="stable")
        doc, r = keys // n_ranks, keys % n_ranks  # each document's shingles, rarest first
        del keys
        position = np.arange(len(r)) - self.offsets[doc]
        prefix = self.sizes - np.ceil(threshold * self.sizes - 1e-9).astype(np.int64) + 1
        keep = position < prefix[doc]
        keys = np.sort(r[keep] * np.int64(n_docs) + doc[keep], kind="stable")  # prefix postings, by shingle
        r, doc = keys // n_docs, keys % n_docs
        first, second = group_pairs(r)
        cand = np.unique(np.minimum(doc[first], doc[second]) * n_docs + np.maximum(doc[first], doc[second]))
        a, b = cand // n_docs, cand % n_docs
        small, large = np.minimum(self.sizes[a], self.sizes[b]), np.maximum(self.sizes[a], self.sizes[b])
        ok = small >= threshold * large - 1e-9  # size filter: J <= small / large
        out = {}
        for i, j in zip(a[ok].tolist(), b[ok].tolist()):
            jac = self.jaccard(i, j)
            if jac >= threshold:
                out[(i, j)] = jac
        return out


# --- 4. the stage and datatrove, each in a child process ---------------------------------------------
def run_child(kind: str, spec: dict, tmp: Path) -> dict:
    """Run this script as ``--child kind spec.json`` and return what it wrote."""
    spec_path, result_path = tmp / f"{kind}-spec.json", tmp / f"{kind}-result.json"
    spec_path.write_text(json.dumps({**spec, "result": str(result_path)}))
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", kind, str(spec_path)], cwd=REPO,
                            stderr=subprocess.PIPE, text=True, errors="replace")
    ooms = 0
    for line in proc.stderr:  # passed on, and the JVM's heap exhaustions counted
        sys.stderr.write(line)
        ooms += "java.lang.OutOfMemoryError" in line
    if proc.wait() != 0:
        sys.exit(f"{kind} child failed with exit code {proc.returncode}")
    result = json.loads(result_path.read_text())
    result["child_wall_s"] = time.perf_counter() - started
    result["java_out_of_memory_errors"] = ooms
    return result


def child_stage(spec: dict) -> dict:
    from llm_core.dedup.dedupe import dedupe
    from llm_core.spark import SparkConfig, get_spark

    spark_config = SparkConfig(**spec["spark"])
    rss0, _ = tree_rss()
    started = time.perf_counter()
    tracker = get_spark(spark_config).sparkContext.statusTracker()

    def jobs_so_far() -> int:
        ids = tracker.getJobIdsForGroup(None)
        return max(ids) + 1 if ids else 0

    session_s = time.perf_counter() - started
    idle_rss, _ = tree_rss()
    runs = []
    for job in spec["jobs"]:
        before, _ = tree_rss()
        jobs_before = jobs_so_far()
        with PeakRSS() as peak:
            started = time.perf_counter()
            stats = dedupe(DedupeConfig(**spec["dedupe"]), spark_config, Path(job["docs"]), Path(job["out"]))
            wall = time.perf_counter() - started
        runs.append({"name": job["name"], "wall_s": wall, "peak_rss": peak.peak, "processes_at_peak": peak.processes,
                     "rss_before": before, "spark_jobs": jobs_so_far() - jobs_before, "stats": stats})
        log(f"  stage {job['name']}: {stats['docs_in']} docs in {wall:.1f}s ({runs[-1]['spark_jobs']} Spark jobs), "
            f"peak tree RSS {peak.peak / 2**30:.2f} GiB ({peak.processes} processes), dropped {stats['dropped']}")
    return {"spark_session_s": session_s, "python_rss_before_session": rss0, "idle_rss_after_session": idle_rss,
            "runs": runs}


def datatrove_settings(config: DedupeConfig) -> dict:
    from llm_core.dedup.near import banding

    bands, rows = banding(config)
    try:  # datatrove's default hash; it passes str, which xxhash >= 4 refuses
        import xxhash

        xxhash.xxh64_intdigest("datatrove")
        hash_fc = "xxhash"
    except (ImportError, TypeError):
        hash_fc = "sha1"
    return {"n_grams": config.shingle_size, "num_buckets": bands, "hashes_per_bucket": rows, "seed": 1,
            "hash_fc": hash_fc, "precision": 64}


def child_datatrove(spec: dict) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter
    from datatrove.utils.hashing import HashConfig

    s = spec["settings"]
    config = MinhashConfig(n_grams=s["n_grams"], num_buckets=s["num_buckets"], hashes_per_bucket=s["hashes_per_bucket"],
                           seed=s["seed"], hash_config=HashConfig(precision=s["precision"], hash_fc=s["hash_fc"]))
    docs, files, cores = spec["docs"], spec["files"], spec["cores"]

    def reader():
        return ParquetReader(docs, text_key="text", id_key="id")

    def pipeline(work: Path) -> list:
        return [
            LocalPipelineExecutor(pipeline=[reader(),
                                            MinhashDedupSignature(output_folder=str(work / "sigs"), config=config)],
                                  tasks=files, workers=cores, logging_dir=str(work / "logs/1")),
            LocalPipelineExecutor(pipeline=[MinhashDedupBuckets(input_folder=str(work / "sigs"),
                                                                output_folder=str(work / "buckets"), config=config)],
                                  tasks=config.num_buckets, workers=cores, logging_dir=str(work / "logs/2")),
            LocalPipelineExecutor(pipeline=[MinhashDedupCluster(input_folder=str(work / "buckets"),
                                                                output_folder=str(work / "remove"), config=config,
                                                                save_cluster_id=True)],
                                  tasks=1, logging_dir=str(work / "logs/3")),
            LocalPipelineExecutor(pipeline=[reader(),
                                            MinhashDedupFilter(input_folder=str(work / "remove"), load_cluster_ids=True,
                                                               exclusion_writer=ParquetWriter(str(work / "removed"),
                                                                                              expand_metadata=True)),
                                            ParquetWriter(str(work / "kept"), expand_metadata=True)],
                                  tasks=files, workers=cores, logging_dir=str(work / "logs/4")),
        ]

    runs = []
    for k in range(spec["repeats"]):  # each run from scratch in its own folder
        stages, walls = pipeline(Path(spec["work"]) / f"run{k}"), []
        with PeakRSS() as peak:
            started = time.perf_counter()
            for stage in stages:
                t = time.perf_counter()
                stage.run()
                walls.append(time.perf_counter() - t)
            wall = time.perf_counter() - started
        log(f"  datatrove run {k + 1}: {wall:.1f}s (stages {', '.join(f'{w:.1f}' for w in walls)}), "
            f"peak tree RSS {peak.peak / 2**30:.2f} GiB")
        runs.append({"wall_s": wall, "stage_s": walls, "peak_rss": peak.peak, "processes_at_peak": peak.processes})
    return {"runs": runs}


def child_main(kind: str, spec_path: str) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    spec = json.loads(Path(spec_path).read_text())
    if kind == "datatrove":
        from loguru import logger

        logger.remove()  # datatrove logs every task to stderr; the figures go to the result file
        logger.add(sys.stderr, level="WARNING")
    result = child_stage(spec) if kind == "stage" else child_datatrove(spec)
    Path(spec["result"]).write_text(json.dumps(result))


# --- 5. scoring ------------------------------------------------------------------------------------
class UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def stage_clusters(out: Path, ids: list[str]) -> dict:
    """The stage's output read back: cluster label per document (as written: ``dup_cluster``;
    linked: also through ``dup_of``), the direct (document, dup_of) pairs and the reasons."""
    index = {d: i for i, d in enumerate(ids)}
    kept = pq.read_table(out / "docs", columns=["id", "dup_cluster"]).to_pylist()
    rejected = pq.read_table(out / "rejected", columns=["id", "dup_cluster", "dup_of", "reason"]).to_pylist()
    label = [-1] * len(ids)
    names: dict[str, int] = {}
    for row in kept + rejected:
        label[index[row["id"]]] = names.setdefault(row["dup_cluster"], len(names))
    missing = sum(1 for x in label if x < 0)
    uf = UnionFind(len(ids))
    first: dict[int, int] = {}
    for i, lab in enumerate(label):
        if lab in first:
            uf.union(first[lab], i)
        else:
            first[lab] = i
    direct = []
    for row in rejected:
        if row["dup_of"] is not None:
            i, j = index[row["id"]], index[row["dup_of"]]
            direct.append((min(i, j), max(i, j), row["reason"]))
            uf.union(i, j)
    return {"written": label, "linked": [uf.find(i) for i in range(len(ids))], "direct": direct,
            "missing": missing, "kept": len(kept), "rejected": len(rejected),
            "reasons": dict(Counter(r["reason"] for r in rejected))}


def datatrove_clusters(work: Path, ids: list[str]) -> dict:
    index = {d: i for i, d in enumerate(ids)}
    label = list(range(len(ids)))  # not in a cluster: a cluster of its own
    removed = 0
    for folder in ("kept", "removed"):
        for path in sorted((work / folder).glob("*.parquet")):
            table = pq.read_table(path)
            cluster = table.column("minhash_cluster_id").to_pylist() if "minhash_cluster_id" in table.column_names \
                else [-1] * table.num_rows
            for doc_id, c in zip(table.column("id").to_pylist(), cluster):
                if c is not None and c >= 0:
                    label[index[doc_id]] = len(ids) + c
            removed += table.num_rows if folder == "removed" else 0
    return {"label": label, "removed": removed}


def prf(tp: int, declared: int, truth: int) -> dict:
    p = tp / declared if declared else 1.0
    r = tp / truth if truth else 1.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "tp": tp,
            "declared_pairs": declared, "truth_pairs": truth}


def pair_scores(label: list[int], truth: dict[tuple[int, int], float]) -> dict:
    """Precision / recall / F1 of the pairs within the clusters of ``label`` against ``truth``."""
    sizes = Counter(label)
    declared = sum(k * (k - 1) // 2 for k in sizes.values())
    tp = sum(1 for (i, j) in truth if label[i] == label[j])
    out = prf(tp, declared, len(truth))
    out["clusters"] = sum(1 for k in sizes.values() if k > 1)
    out["largest_cluster"] = max(sizes.values()) if sizes else 0
    return out


def false_positive_jaccard(label: list[int], truth: dict, sets: ShingleSets, limit: int = 20000) -> dict:
    """How similar the declared pairs below the threshold are (all of them up to ``limit`` pairs)."""
    members = defaultdict(list)
    for i, lab in enumerate(label):
        members[lab].append(i)
    values = []
    for group in members.values():
        if len(group) < 2:
            continue
        for x in range(len(group)):
            for y in range(x + 1, len(group)):
                pair = (group[x], group[y])
                if pair not in truth:
                    values.append(sets.jaccard(*pair))
                if len(values) >= limit:
                    break
    if not values:
        return {"n": 0}
    v = np.array(values)
    return {"n": len(v), "mean": float(v.mean()), "min": float(v.min()), "p10": float(np.quantile(v, 0.1)),
            "median": float(np.median(v)), "share_ge_0_7": float((v >= 0.7).mean())}


def per_edit(corpus: Corpus, label: list[int], sets: ShingleSets, threshold: float,
             linked: list[int] | None = None) -> dict:
    """(original, copy) pairs by edit rate and by kind: Jaccard, share above threshold, recall
    (and with ``linked`` clusters), precision, and how often a pair below the threshold was
    declared anyway."""
    linked = linked or label
    groups: dict[str, list[tuple[float, bool, bool]]] = defaultdict(list)
    for c, o in enumerate(corpus.origin):
        if o < 0:
            continue
        row = (sets.jaccard(min(o, c), max(o, c)), label[o] == label[c], linked[o] == linked[c])
        groups[f"rate={corpus.rate[c]:g}"].append(row)
        groups[f"kind={corpus.kind[c]}"].append(row)
        groups[f"{corpus.kind[c]}@{corpus.rate[c]:g}"].append(row)
    out: dict = {"recall_by_kind_and_rate": defaultdict(dict)}
    for key in sorted(groups, key=lambda k: (not k.startswith("rate="), not k.startswith("kind="), k)):
        rows = groups[key]
        pos = [(d, ln) for j, d, ln in rows if j >= threshold]
        neg = [d for j, d, _ in rows if j < threshold]
        tp, fp = sum(d for d, _ in pos), sum(neg)
        if "@" in key:  # [recall, recall with linked clusters, pairs above threshold, pairs]
            kind, rate = key.split("@")
            out["recall_by_kind_and_rate"][kind][rate] = [tp / len(pos) if pos else None,
                                                          sum(ln for _, ln in pos) / len(pos) if pos else None,
                                                          len(pos), len(rows)]
            continue
        out[key] = {"pairs": len(rows), "mean_jaccard": float(np.mean([j for j, _, _ in rows])),
                    "share_above_threshold": len(pos) / len(rows),
                    "recall": tp / len(pos) if pos else None,
                    "recall_linked": sum(ln for _, ln in pos) / len(pos) if pos else None,
                    "precision": tp / (tp + fp) if tp + fp else None,
                    "declared_below_threshold": fp / len(neg) if neg else None}
    return out


def score_stage(corpus: Corpus, result: dict, truth: dict, sets: ShingleSets, threshold: float) -> dict:
    written = pair_scores(result["written"], truth)
    linked = pair_scores(result["linked"], truth)
    direct = result["direct"]
    direct_true = [(i, j, reason) for i, j, reason in direct if (i, j) in truth]
    by_reason = {}
    for reason in sorted({r for _, _, r in direct}):
        n = sum(1 for *_, r in direct if r == reason)
        by_reason[reason] = {"pairs": n, "precision": sum(1 for *_, r in direct_true if r == reason) / n}
    return {**written, "linked": linked,
            "direct_pairs": len(direct), "direct_precision": len(direct_true) / len(direct) if direct else None,
            "direct_by_reason": by_reason,
            "declared_below_threshold_jaccard": false_positive_jaccard(result["written"], truth, sets),
            "per_edit": per_edit(corpus, result["written"], sets, threshold, result["linked"]),
            "missing_from_output": result["missing"], "kept": result["kept"], "rejected": result["rejected"],
            "reasons": result["reasons"]}


# --- 5b. what-if: the stage's near-duplicate logic replayed in numpy with other settings -----------------
def candidate_pairs(keys: np.ndarray, has: np.ndarray, max_bucket_pairs: int) -> np.ndarray:
    """What ``near.candidate_pairs`` yields: (a, b), a < b, sharing a band key; a bucket of more
    than ``max_bucket_pairs`` documents pairs each member with its smallest."""
    n = keys.shape[0]
    rows = np.flatnonzero(has)
    out = []
    for band in range(keys.shape[1]):
        k = keys[rows, band]
        order = np.argsort(k, kind="stable")
        k, docs = k[order], rows[order]
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        lengths = np.diff(np.r_[starts, len(k)])
        two = starts[lengths == 2]
        out.append(np.stack([docs[two], docs[two + 1]], axis=1))
        for s, m in zip(starts[lengths > 2], lengths[lengths > 2]):
            members = np.sort(docs[s : s + m])
            if m <= max_bucket_pairs:
                a, b = np.triu_indices(m, 1)
                out.append(np.stack([members[a], members[b]], axis=1))
            else:
                out.append(np.stack([np.full(m - 1, members[0]), members[1:]], axis=1))
    pairs = np.concatenate(out) if out else np.zeros((0, 2), np.int64)
    pairs = np.sort(pairs, axis=1)
    key = np.unique(pairs[:, 0] * n + pairs[:, 1])
    return np.stack([key // n, key % n], axis=1)


def replay(sigs: np.ndarray, has: np.ndarray, sets: ShingleSets, truth: dict, bands: int, rows: int,
           estimate_min: float, exact_min: float | None, max_bucket_pairs: int = 64) -> dict:
    """Candidates from ``bands`` x ``rows``; an edge when the full-signature estimate is >=
    ``estimate_min`` and (if set) the exact Jaccard >= ``exact_min``; clusters = connected
    components (exact duplicates have equal signatures, so they join as the exact pass joins them)."""
    from llm_core.dedup import minhash

    keys = minhash.band_hashes(sigs, bands, rows)
    cand = candidate_pairs(keys, has, max_bucket_pairs)
    est = (sigs[cand[:, 0]] == sigs[cand[:, 1]]).mean(axis=1) if len(cand) else np.zeros(0)
    edges = cand[est >= estimate_min - 1e-12]
    if exact_min is not None:
        edges = np.array([(a, b) for a, b in edges.tolist() if sets.jaccard(a, b) >= exact_min - 1e-12],
                         dtype=np.int64).reshape(-1, 2)
    uf = UnionFind(sigs.shape[0])
    for a, b in edges.tolist():
        uf.union(a, b)
    label = [uf.find(i) for i in range(sigs.shape[0])]
    return {**pair_scores(label, truth), "bands": bands, "rows": rows, "estimate_min": estimate_min,
            "exact_min": exact_min, "candidates": int(len(cand)), "edges": int(len(edges))}


def what_if(texts: list[str], sets: ShingleSets, truth: dict, config: DedupeConfig) -> dict:
    """F1 of the stage's logic under other settings, on the same corpus and truth (no Spark:
    the replay of the default settings is checked against the stage's own output)."""
    from llm_core.dedup import minhash
    from llm_core.dedup.near import banding

    t = config.threshold
    out = {}
    for num_perm in (config.num_perm, 2 * config.num_perm):
        sigs, has = minhash.text_signatures(texts, num_perm=num_perm)
        default = banding(config) if num_perm == config.num_perm else minhash.optimal_bands(t, num_perm)
        low = {c: minhash.optimal_bands(c, num_perm) for c in (0.7, 0.6)}
        variants = {
            "default": (default, t, None),
            "verify_exact": (default, t, t),
            "bands_for_0.7_estimate_0.7_exact": (low[0.7], 0.7, t),
            "bands_for_0.6_exact_only": (low[0.6], 0.0, t),
            "bands_for_0.7_estimate_0.8": (low[0.7], t, None),
        }
        if num_perm == 112 or num_perm == config.num_perm:
            variants["datatrove_like_14x8_no_verification"] = ((14, 8), 0.0, None)
        for name, ((b, r), est, exact) in variants.items():
            if b * r > num_perm:
                continue
            result = replay(sigs, has, sets, truth, b, r, est, exact, config.max_bucket_pairs)
            out[f"{num_perm}:{name}"] = result
            log(f"    what-if {num_perm} perms {name:38s} {b}x{r}: P {result['precision']:.4f} "
                f"R {result['recall']:.4f} F1 {result['f1']:.4f} ({result['candidates']} candidates)")
    return out


# --- 6. CopyCat judged pairs -------------------------------------------------------------------------
def copycat_corpus(data: Path) -> tuple[Corpus, list[dict]]:
    path = data / "neardup_webis_copycat_canonical_edges" / "pairs.jsonl"
    pairs = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    corpus = Corpus()
    for p in pairs:
        corpus.add(p["src_doc"], "copycat")
        corpus.add(p["target_doc"], "copycat")
    return corpus, pairs


def score_copycat(pairs: list[dict], label: list[int], sets: ShingleSets, threshold: float) -> dict:
    rows = []
    for k, p in enumerate(pairs):
        a, b = 2 * k, 2 * k + 1
        raw = p["label"].strip().lower()
        raw = "unknown" if raw.startswith("unk") else raw.rstrip("s")  # 'unkown' (5) and '0.5s' (1) as typed
        human = None if raw == "unknown" else float(raw)
        rows.append({"label": raw, "human": human, "jaccard": sets.jaccard(a, b), "declared": label[a] == label[b],
                     "s3": float(p["metadata_parsed"]["S3"])})

    def against(positive) -> dict:
        judged = [r for r in rows if positive(r) is not None]
        tp = sum(1 for r in judged if r["declared"] and positive(r))
        return {**prf(tp, sum(1 for r in judged if r["declared"]), sum(1 for r in judged if positive(r))),
                "pairs": len(judged)}

    per_label = {}
    for lab in sorted({r["label"] for r in rows}):
        sub = [r for r in rows if r["label"] == lab]
        per_label[lab] = {"pairs": len(sub), "declared": sum(r["declared"] for r in sub) / len(sub),
                          "jaccard_at_or_above_threshold": sum(r["jaccard"] >= threshold for r in sub) / len(sub),
                          "median_jaccard": float(np.median([r["jaccard"] for r in sub])),
                          "median_s3": float(np.median([r["s3"] for r in sub]))}
    return {"pairs": len(rows),
            "vs_human_label_ge_2": against(lambda r: None if r["human"] is None else r["human"] >= 2),
            "vs_human_label_3": against(lambda r: None if r["human"] is None else r["human"] >= 3),
            "vs_jaccard": against(lambda r: r["jaccard"] >= threshold),
            "jaccard_vs_human_label_ge_2": {  # how well the Jaccard truth itself matches the humans
                "agreement": float(np.mean([(r["jaccard"] >= threshold) == (r["human"] >= 2)
                                            for r in rows if r["human"] is not None]))},
            "per_label": per_label}


# --- 7. signatures against datasketch -----------------------------------------------------------------
def signature_speed(texts: list[str], config: DedupeConfig, rounds: int) -> dict:
    from datasketch import MinHash

    from llm_core.dedup import minhash

    def ours():
        return minhash.text_signatures(texts)[0]  # its defaults (word 5-grams, 128 permutations, seed 1)

    def sets_of():
        return [shingles(t, config.shingle_size, config.shingle, config.nfkc) for t in texts]

    ours(), MinHash.bulk(sets_of()[:50], num_perm=config.num_perm, seed=config.seed)  # warm-up
    ours_s, shingle_s, bulk_s = [], [], []
    for _ in range(rounds):  # interleaved: the machine's load hits both alike
        started = time.perf_counter()
        sigs = ours()
        ours_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        sets = sets_of()
        shingle_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        theirs = MinHash.bulk(sets, num_perm=config.num_perm, seed=config.seed)
        bulk_s.append(time.perf_counter() - started)
    # The same estimator: datasketch given our shingle hash computes our signatures exactly.
    from functools import partial

    same_hash = MinHash.bulk(sets, num_perm=config.num_perm, seed=config.seed,
                             hashfunc=partial(minhash.shingle_hash32, kind=config.shingle))
    equal = bool((np.asarray(sigs) == np.array([m.hashvalues for m in same_hash]).astype(np.uint32)).all())
    best_ours, best_shingle, best_bulk = min(ours_s), min(shingle_s), min(bulk_s)
    words = sum(len(t.split()) for t in texts)
    return {"docs": len(texts), "words": words, "rounds": rounds,
            "ours_s": best_ours, "datasketch_shingling_s": best_shingle, "datasketch_bulk_s": best_bulk,
            "speedup_incl_shingling": (best_shingle + best_bulk) / best_ours,
            "speedup_excl_shingling": best_bulk / best_ours,
            "ours_docs_per_s": len(texts) / best_ours,
            "datasketch_docs_per_s": len(texts) / (best_shingle + best_bulk),
            "equal_to_datasketch": equal}


def code_state() -> dict:
    """The commit and whether the stage's code differed from it (uncommitted work is measured as is)."""
    import hashlib

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout

    files = sorted((REPO / "llm_core" / "dedup").glob("*.py"))
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:12]
    return {"head": git("rev-parse", "--short", "HEAD").strip(),
            "uncommitted": [line[3:] for line in git("status", "--porcelain", "llm_core").splitlines()],
            "llm_core_dedup_sha256": digest}


# --- main ---------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000", help="corpus sizes for the stage, comma-separated")
    parser.add_argument("--large", action="store_true", help="add a 1,000,000-document corpus (stage only)")
    parser.add_argument("--dup-share", type=float, default=0.3, help="share of the corpus that is injected copies")
    parser.add_argument("--pages", type=int, default=200, help="saved web pages to extract at most")
    parser.add_argument("--sig-docs", type=int, default=5000, help="documents for the signature speed test")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of the signature test (best kept)")
    parser.add_argument("--datatrove-docs", type=int, default=None,
                        help="corpus size for datatrove (default the first size)")
    parser.add_argument("--no-datatrove", action="store_true")
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs of datatrove and of the stage on the compared corpus (the best of each compared)")
    parser.add_argument("--accuracy-max", type=int, default=100_000, help="largest corpus scored against the truth")
    parser.add_argument("--what-if-size", type=int, default=None,
                        help="corpus on which other settings are replayed in numpy (default the first size; 0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dedupe", default="{}",
                        help='dedupe settings as JSON, e.g. \'{"verify_exact": true, "candidate_threshold": 0.7}\'')
    parser.add_argument("--child", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(*args.child)
        return

    total_started = time.perf_counter()
    sizes = sorted({int(s) for s in args.sizes.split(",") if s})
    if args.large:
        sizes = sorted({*sizes, 1_000_000})
    dt_size = args.datatrove_docs or sizes[0]
    what_if_size = sizes[0] if args.what_if_size is None else args.what_if_size
    data = shared_data()
    cores = os.cpu_count() or 1
    config = DedupeConfig(**json.loads(args.dedupe))
    threshold = config.threshold
    load_before = os.getloadavg()

    log(f"loading real text from {data}")
    started = time.perf_counter()
    units = load_units(data, args.pages, cores, args.seed)
    units_s = time.perf_counter() - started
    log(f"units: {len(units)} ({dict(Counter(s for s, _ in units))}), {sum(len(t) for _, t in units):,} characters, "
        f"{units_s:.1f}s")

    figures: dict = {"benchmark": "dedup"}
    tmp = Path(tempfile.mkdtemp(prefix="llmpipe-bench-dedup-", dir="/tmp"))
    try:
        # Corpora and their truth, written as stage inputs.
        corpora, truths, sets_of, ids_of, truth_s = {}, {}, {}, {}, {}
        jobs = []
        cc_corpus, cc_pairs = copycat_corpus(data)
        ids_of["copycat"] = write_corpus(cc_corpus, tmp / "in-copycat", 1, prefix="copycat")
        jobs.append({"name": "copycat", "docs": str(tmp / "in-copycat"), "out": str(tmp / "out-copycat")})
        for size in sorted({*sizes, dt_size}):
            started = time.perf_counter()
            corpus = build_corpus(units, size, args.dup_share, args.seed)
            ids_of[size] = write_corpus(corpus, tmp / f"in-{size}", cores)
            log(f"corpus {size}: {len(corpus)} docs, {sum(1 for o in corpus.origin if o >= 0)} copies, "
                f"{sum(len(t) for t in corpus.texts):,} characters, built in {time.perf_counter() - started:.1f}s")
            if size in sizes:
                jobs.append({"name": str(size), "docs": str(tmp / f"in-{size}"), "out": str(tmp / f"out-{size}")})
            if size <= args.accuracy_max or size == dt_size:
                corpora[size] = corpus
            del corpus
            gc.collect()
        if dt_size in sizes and not args.no_datatrove:  # the compared size again, last (best of the runs)
            for k in range(2, args.repeats + 1):
                jobs.append({"name": f"{dt_size}#{k}", "docs": str(tmp / f"in-{dt_size}"),
                             "out": str(tmp / f"out-{dt_size}-{k}")})

        # Signatures against datasketch (before the children: this process has the cores alone).
        sig_corpus = corpora.get(dt_size) or next(iter(corpora.values()))
        sig_texts = sig_corpus.texts[: args.sig_docs]
        log(f"signatures: {len(sig_texts)} docs, {args.rounds} rounds")
        signature = signature_speed(sig_texts, config, args.rounds)
        log(f"  ours {signature['ours_s']:.2f}s, datasketch shingling {signature['datasketch_shingling_s']:.2f}s + "
            f"bulk {signature['datasketch_bulk_s']:.2f}s: {signature['speedup_incl_shingling']:.2f}x incl. shingling, "
            f"{signature['speedup_excl_shingling']:.2f}x excl.; equal to datasketch: "
            f"{signature['equal_to_datasketch']}")

        # The stage: one child process, one Spark session, the sizes in ascending order.
        log("stage (child process)")
        spark = {"master": "local[*]", "conf": {"spark.driver.memory": "8g"} if max(sizes) > 200_000 else {}}
        stage = run_child("stage", {"spark": spark, "dedupe": config.model_dump(), "jobs": jobs}, tmp)
        runs = {r["name"]: r for r in stage["runs"]}

        # datatrove on one corpus.
        dt = None
        if not args.no_datatrove:
            log(f"datatrove on the {dt_size}-document corpus (child process)")
            settings = datatrove_settings(config)
            dt_in = tmp / f"dt-in-{dt_size}"
            table = pq.read_table(tmp / f"in-{dt_size}", columns=["id", "text"])
            size = -(-table.num_rows // cores)
            dt_in.mkdir()
            for i in range(cores):
                pq.write_table(table.slice(i * size, size), dt_in / f"part-{i:05d}.parquet")
            del table
            dt = run_child("datatrove", {"settings": settings, "docs": str(dt_in), "work": str(tmp / "dt-work"),
                                         "files": cores, "cores": cores, "repeats": args.repeats}, tmp)
            best = min(dt["runs"], key=lambda r: r["wall_s"])
            dt.update(settings=settings, wall_s=best["wall_s"], stage_s=best["stage_s"],
                      peak_rss=max(r["peak_rss"] for r in dt["runs"]))
            ours = [r for name, r in runs.items() if name.split("#")[0] == str(dt_size)]
            dt["ours_runs_s"] = [r["wall_s"] for r in ours]
            dt["ours_best"] = min(ours, key=lambda r: r["wall_s"]) if ours else None

        # Accuracy.
        accuracy = {}
        cc_sets = ShingleSets(cc_corpus.texts, config)
        cc_result = stage_clusters(Path(jobs[0]["out"]), ids_of["copycat"])
        copycat = score_copycat(cc_pairs, cc_result["written"], cc_sets, threshold)
        for key in ("vs_human_label_ge_2", "vs_human_label_3", "vs_jaccard"):
            c = copycat[key]
            log(f"copycat {key}: P {c['precision']:.3f} R {c['recall']:.3f} F1 {c['f1']:.3f} ({c['pairs']} pairs)")
        for size, corpus in corpora.items():
            started = time.perf_counter()
            sets = ShingleSets(corpus.texts, config)
            truth = sets.similar_pairs(threshold)
            truth_s[size] = time.perf_counter() - started
            sets_of[size], truths[size] = sets, truth
            log(f"truth {size}: {len(truth)} pairs with Jaccard >= {threshold} in {truth_s[size]:.1f}s")
            if str(size) in runs:
                result = stage_clusters(tmp / f"out-{size}", ids_of[size])
                accuracy[size] = score_stage(corpus, result, truth, sets, threshold)
                a = accuracy[size]
                log(f"  stage: P {a['precision']:.4f} R {a['recall']:.4f} F1 {a['f1']:.4f} "
                    f"(direct P {a['direct_precision']:.4f}; linked F1 {a['linked']['f1']:.4f})")
                if size == what_if_size:
                    replayed = what_if(corpus.texts, sets, truth, config)
                    replayed["stage_linked_f1"] = a["linked"]["f1"]
                    a["what_if"] = replayed
                log(f"    {'pairs (original, copy)':22s} {'n':>6s} {'mean J':>6s} {'J>=t':>6s} {'recall':>6s} "
                    f"{'linked':>6s} {'prec.':>6s} {'J<t declared':>12s}")
                for key, row in a["per_edit"].items():
                    if key.startswith(("rate=", "kind=")):
                        log(f"    {key:22s} {row['pairs']:6d} {row['mean_jaccard']:6.3f} "
                            f"{row['share_above_threshold']:6.3f} {fmt(row['recall'])} {fmt(row['recall_linked'])} "
                            f"{fmt(row['precision'])} {fmt(row['declared_below_threshold']):>12s}")
        if dt is not None:
            corpus = corpora[dt_size]
            dtc = datatrove_clusters(tmp / "dt-work" / "run0", ids_of[dt_size])
            dt_scores = pair_scores(dtc["label"], truths[dt_size])
            dt_scores["declared_below_threshold_jaccard"] = false_positive_jaccard(dtc["label"], truths[dt_size],
                                                                                  sets_of[dt_size])
            dt_edit = per_edit(corpus, dtc["label"], sets_of[dt_size], threshold)
            dt_scores["per_edit"] = {k: v for k, v in dt_edit.items() if k.startswith(("rate=", "kind="))}
            dt["accuracy"] = dt_scores
            dt["removed"] = dtc["removed"]
            log(f"  datatrove: P {dt_scores['precision']:.4f} R {dt_scores['recall']:.4f} F1 {dt_scores['f1']:.4f}, "
                f"removed {dtc['removed']}")

        largest = str(max(sizes))
        head = accuracy.get(max(accuracy)) if accuracy else {}
        head_size = max(accuracy) if accuracy else None
        growth = {name: {"docs": r["stats"]["docs_in"], "wall_s": r["wall_s"],
                         "docs_per_s": r["stats"]["docs_in"] / r["wall_s"],
                         "peak_rss_gib": r["peak_rss"] / 2**30, "rss_before_gib": r["rss_before"] / 2**30,
                         "processes_at_peak": r["processes_at_peak"], "spark_jobs": r["spark_jobs"],
                         "dropped": r["stats"]["dropped"],
                         "near_clusters": r["stats"].get("near_clusters"),
                         "cluster_sizes": r["stats"].get("cluster_sizes"),
                         "bands_rows": [r["stats"].get("bands"), r["stats"].get("rows")]}
                  for name, r in runs.items()}
        figures.update({
            "precision": head.get("precision"), "recall": head.get("recall"), "f1": head.get("f1"),
            "accuracy_docs": head_size,
            "direct_precision": head.get("direct_precision"),
            "precision_linked": head.get("linked", {}).get("precision"),
            "recall_linked": head.get("linked", {}).get("recall"), "f1_linked": head.get("linked", {}).get("f1"),
            "signature_speedup_vs_datasketch": signature["speedup_incl_shingling"],
            "signature_speedup_vs_datasketch_excl_shingling": signature["speedup_excl_shingling"],
            "stage_speedup_vs_datatrove": (dt["wall_s"] / dt["ours_best"]["wall_s"]
                                           if dt and dt["ours_best"] else None),
            "docs_per_s": growth[largest]["docs_per_s"], "docs_per_s_docs": int(largest),
            "peak_rss_gib": {k: v["peak_rss_gib"] for k, v in growth.items()},
            "wall_s": {k: v["wall_s"] for k, v in growth.items()},
            "accuracy": {str(k): v for k, v in accuracy.items()},
            "copycat": copycat,
            "signatures": signature,
            "datatrove": None if dt is None else {
                "docs": dt_size, "wall_s": dt["wall_s"], "stage_s": dt["stage_s"],
                "peak_rss_gib": dt["peak_rss"] / 2**30,
                "runs_s": [r["wall_s"] for r in dt["runs"]], "ours_runs_s": dt["ours_runs_s"],
                "ours_wall_s": dt["ours_best"]["wall_s"] if dt["ours_best"] else None,
                "ours_peak_rss_gib": dt["ours_best"]["peak_rss"] / 2**30 if dt["ours_best"] else None,
                "settings": dt["settings"], "removed": dt["removed"], "accuracy": dt["accuracy"],
                "version": __import__("importlib.metadata").metadata.version("datatrove")},
            "growth": growth,
            "spark_session_s": stage["spark_session_s"],
            "java_out_of_memory_errors": stage["java_out_of_memory_errors"],
            "spark_idle_rss_gib": stage["idle_rss_after_session"] / 2**30,
            "code": code_state(),
            "truth_s": {str(k): v for k, v in truth_s.items()},
            "corpus": {"units": len(units), "unit_sources": dict(Counter(s for s, _ in units)),
                       "unit_chars": sum(len(t) for _, t in units), "dup_share": args.dup_share,
                       "edit_rates": EDIT_RATES,
                       "edit_kinds": [*EDIT_KINDS, "reformat"], "sizes": sizes, "seed": args.seed,
                       "truth_pairs": {str(k): len(v) for k, v in truths.items()}},
            "config": {"threshold": threshold, "num_perm": config.num_perm, "shingle": config.shingle,
                       "shingle_size": config.shingle_size, "bands_rows": growth[largest]["bands_rows"],
                       "verify_exact": config.verify_exact, "candidate_threshold": config.candidate_threshold,
                       "keep": config.keep},
            "load_avg_before": list(load_before), "load_avg_after": list(os.getloadavg()),
            "total_s": time.perf_counter() - total_started,
            "machine": f"{platform.machine()}, {cores} cores, Python {platform.python_version()}",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        })
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(rounded(figures)))


if __name__ == "__main__":
    main()
