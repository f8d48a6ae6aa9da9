"""Extraction: main-text quality against two gold standards, and pages per second.

On real data from the shared folder (``LLMPIPE_SHARED_DATA``, default ``../shared/data``):

1. Scrapinghub's article-extraction benchmark (``html_scrapinghub_aeb``: 181 pages and the
   human-checked article body of each): precision, recall and F1 by the benchmark's own
   protocol (its ``evaluate.py``: shingles of 4 ``\\w+`` tokens matched as multisets, each
   page's counts normalised, precision and recall averaged over pages, F1 of the two means;
   so the figures read against its published table), and by single tokens. Ours is
   ``llm_core.crawl.extract.extract`` (the crawl stage's extraction: our decoding, then
   trafilatura); the naive baseline, in the same run, is BeautifulSoup's ``get_text(" ")``
   of the whole page.
2. trafilatura's evaluation set (``html_trafilatura/evaldata.json``: 990 pages, snippets
   that must appear in the main text and boilerplate snippets that must not): the share of
   "with" snippets found and of "without" snippets absent, over all snippets.
3. Speed: every page of both sets (1,171) extracted by 1 and by 2 worker processes
   (``ProcessPoolExecutor``, pages read and gunzipped beforehand, workers started and
   warmed before the clock).

The last line printed is one JSON object of the figures (``f1_aeb``, ``f1_aeb_baseline``,
``snippets_with_found``, ``snippets_without_absent``, ``pages_per_s_1worker``,
``pages_per_s_2workers`` and their detail). Default size: every page, ~3 minutes on 2 cores.
Usage: .venv/bin/python benchmarks/extraction.py [--pages N]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from statistics import mean

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from support import log, rounded, shared_data  # noqa: E402

TOKEN = re.compile(r"\w+", re.UNICODE)


def read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def aeb_pages(data: Path) -> list[tuple[str, bytes, str]]:
    """(url, html, gold article body) of the Scrapinghub benchmark."""
    root = data / "html_scrapinghub_aeb"
    gold = json.loads((root / "ground-truth.json").read_text())
    return [(entry["url"], read(root / "html" / f"{key}.html.gz"), entry.get("articleBody", ""))
            for key, entry in sorted(gold.items())]


def trafilatura_pages(data: Path) -> list[tuple[str, bytes, list[str], list[str]]]:
    """(url, html, snippets that must appear, snippets that must not) of trafilatura's set."""
    root = data / "html_trafilatura"
    pages = []
    for url, entry in sorted(json.loads((root / "evaldata.json").read_text()).items()):
        path = root / "cache" / entry["file"]
        path = path if path.exists() else root / "eval" / f"{entry['file']}.gz"
        pages.append((url, read(path), entry.get("with", []), entry.get("without", [])))
    return pages


# --- extractors (module level: the worker processes import them) ----------------------------------
def ours(page: tuple[str, bytes]) -> str:
    from llm_core.crawl.extract import extract

    result = extract(page[1], page[0])
    return "" if isinstance(result, str) else result["text"]


def naive(page: tuple[str, bytes]) -> str:
    from bs4 import BeautifulSoup

    return BeautifulSoup(page[1], "lxml").get_text(" ")


def warm(_: int) -> int:
    import llm_core.crawl.extract  # noqa: F401 (trafilatura, lxml, htmldate imported before the clock)

    return os.getpid()


# --- scoring --------------------------------------------------------------------------------------
def matching(true: str, pred: str, n: int) -> tuple[float, float, float]:
    """(tp, fp, fn) over n-token shingles as multisets, normalised to sum 1 (the benchmark's
    ``string_shingle_matching``: a long page weighs as much as a short one)."""
    def shingles(text: str) -> Counter:
        tokens = TOKEN.findall(text or "")
        return Counter(tuple(tokens[i:i + n]) for i in range(max(1, len(tokens) - n + 1)) if tokens[i:i + n])

    t, p = shingles(true), shingles(pred)
    tp = sum((t & p).values())
    fp, fn = sum(p.values()) - tp, sum(t.values()) - tp
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (0.0, 0.0, 0.0)


def scores(golds: list[str], texts: list[str], n: int) -> dict[str, float]:
    """Precision over pages with some prediction, recall over pages with some gold text,
    each averaged, F1 of the two means (the benchmark's ``metrics_from_tp_fp_fns``)."""
    counts = [matching(g, t, n) for g, t in zip(golds, texts, strict=False)]

    def ratio(tp: float, other: float, fp: float, fn: float) -> float:
        return 1.0 if fp == fn == 0 else (tp / (tp + other) if tp + other else 0.0)

    precision = mean(ratio(tp, fp, fp, fn) for tp, fp, fn in counts if tp + fp > 0)
    recall = mean(ratio(tp, fn, fp, fn) for tp, fp, fn in counts if tp + fn > 0)
    return {"precision": precision, "recall": recall, "f1": 2 * precision * recall / (precision + recall)}


def snippets(pages: list[tuple], texts: list[str]) -> dict[str, float]:
    found = [s in text for (_, _, with_, _), text in zip(pages, texts, strict=False) for s in with_]
    absent = [s not in text for (_, _, _, without), text in zip(pages, texts, strict=False) for s in without]
    return {"with_found": mean(found), "without_absent": mean(absent), "with": len(found), "without": len(absent)}


def timed(pool: ProcessPoolExecutor, fn, pages: list[tuple[str, bytes]]) -> tuple[list[str], float]:
    started = time.perf_counter()
    texts = list(pool.map(fn, pages, chunksize=4))
    return texts, time.perf_counter() - started



def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=None, help="at most this many pages of each set (default all)")
    args = parser.parse_args()
    data = shared_data()
    aeb = aeb_pages(data)[:args.pages]
    traf = trafilatura_pages(data)[:args.pages]
    pages = [(url, html) for url, html, *_ in aeb + traf]
    log(f"{len(aeb)} benchmark pages with gold bodies, {len(traf)} pages with snippets")

    times = {}
    for workers in (2, 1):
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(warm, range(workers * 4)))
            texts, times[workers] = timed(pool, ours, pages)
            if workers == 2:
                extracted = texts
                naive_texts, naive_s = timed(pool, naive, pages[:len(aeb)])
        log(f"{workers} worker(s): {len(pages)} pages in {times[workers]:.1f}s")
    ours_aeb, ours_traf = extracted[:len(aeb)], extracted[len(aeb):]
    golds = [gold for _, _, gold in aeb]
    shingled, tokens = scores(golds, ours_aeb, 4), scores(golds, ours_aeb, 1)
    base_shingled, base_tokens = scores(golds, naive_texts, 4), scores(golds, naive_texts, 1)
    snip = snippets(traf, ours_traf)
    log(f"AEB F1 {shingled['f1']:.3f} (baseline {base_shingled['f1']:.3f}); snippets with {snip['with_found']:.3f}, "
        f"without {snip['without_absent']:.3f}")

    import trafilatura

    figures = {
        "benchmark": "extraction",
        "f1_aeb": shingled["f1"], "precision_aeb": shingled["precision"], "recall_aeb": shingled["recall"],
        "f1_aeb_baseline": base_shingled["f1"], "precision_aeb_baseline": base_shingled["precision"],
        "recall_aeb_baseline": base_shingled["recall"],
        "f1_aeb_tokens": tokens["f1"], "precision_aeb_tokens": tokens["precision"],
        "recall_aeb_tokens": tokens["recall"], "f1_aeb_tokens_baseline": base_tokens["f1"],
        "snippets_with_found": snip["with_found"], "snippets_without_absent": snip["without_absent"],
        "pages_per_s_1worker": len(pages) / times[1], "pages_per_s_2workers": len(pages) / times[2],
        "detail": {
            "aeb_pages": len(aeb), "aeb_empty": sum(not t for t in ours_aeb), "trafilatura_pages": len(traf),
            "trafilatura_empty": sum(not t for t in ours_traf), "snippets_with": snip["with"],
            "snippets_without": snip["without"], "timed_pages": len(pages),
            "baseline": "BeautifulSoup(html, 'lxml').get_text(' ')",
            "baseline_pages_per_s_2workers": len(aeb) / naive_s,
            "aeb_protocol": "evaluate.py of scrapinghub/article-extraction-benchmark: 4-token shingles; "
                            "*_tokens: single tokens",
        },
        "trafilatura": trafilatura.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    print(json.dumps(rounded(figures)))


if __name__ == "__main__":
    main()
