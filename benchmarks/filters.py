"""Filters: language-ID accuracy, rule agreement and speed against datatrove, stage throughput, PII.

On real data from the shared folder (``LLMPIPE_SHARED_DATA``, default ``../shared/data``);
nothing is copied into the repository (the corpus lives in a temporary directory).

1. Corpus: real web pages, main text extracted by our crawler's extraction
   (``llm_core.crawl.extract.extract_document``, trafilatura underneath): every response in
   the real crawl WARCs (dolma's two 2024 crawl samples, resiliparse's Common Crawl excerpt
   and ClueWeb09 Japanese records, CopyCat's Wayback snapshots), then the saved pages of the
   extraction test sets (trafilatura's, Scrapinghub's, Mozilla Readability's) up to ``--docs``.
2. Each Gopher quality / Gopher repetition / C4 / FineWeb rule, default config, against
   datatrove 0.10.1's filter with its default settings, on the same documents (our
   ``Document(text, {"lang": "en"})``, datatrove's English tokenizer): agreement is the share
   of documents where keep/drop match; speed is datatrove's time over ours, same process, the
   rounds interleaved, calling datatrove's ``filter()`` directly on ``datatrove.data.Document``
   objects (no executor, no stats). Disagreements and example reasons go to stderr.
3. The filter stage itself (``filter_documents``: one Spark ``local[*]`` pass), every default
   rule but the quality classifier (it needs reference texts), all languages allowed, on the
   corpus repeated ``--repeat`` times (new ids): docs / s / core, the Spark session started
   before the clock, the input in one Parquet file per core (one file of one row group is one
   Spark task: measured too). Per rule: each rule alone over the corpus in Python (``apply_rules``).
4. Language ID (lid.176) accuracy per language on lingua's single sentences and on UDHR
   paragraphs (>= 200 characters) and whole translations.
5. PII precision and recall (overlap match) on ``tests/data/pii_labelled.jsonl``.

The last line printed is one JSON object of the figures (``langid_accuracy_mean``,
``docs_per_s_per_core``, ``agreement_with_datatrove``, ``speedup_vs_datatrove``,
``pii_precision``, ``pii_recall`` and their detail).
Default size: ~1,000 pages, a few minutes on 2 cores (datatrove's filters take most of it).
Usage: .venv/bin/python benchmarks/filters.py [--docs N] [--repeat K] [--rounds R] [--per-language N] [--large]
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from statistics import mean

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from support import log, rounded, shared_data  # noqa: E402

import pyarrow as pa  # noqa: E402

from llm_core.crawl.extract import extract_document  # noqa: E402
from llm_core.documents import DOCUMENT_SCHEMA, document_id, write_documents  # noqa: E402
from llm_core.filters.langid import detect_language  # noqa: E402
from llm_core.filters.rule import Document  # noqa: E402

FAMILIES = ("gopher_quality", "gopher_repetition", "c4", "fineweb")


# --- 1. corpus ----------------------------------------------------------------------------------
WARCS = ("warc_dolma_cc_samples/*.warc.gz", "warc_resiliparse_testdata/warcfile.warc.gz",
         "warc_resiliparse_testdata/clueweb-quirk.warc.gz", "warc_copycat_wayback/*.warc.gz")
PAGES = ("html_trafilatura/cache/*.html", "html_trafilatura/eval/*.html.gz", "html_scrapinghub_aeb/html/*.html.gz",
         "html_mozilla_readability/test-pages/*/source.html")


def raw_pages(data: Path, limit: int) -> list[tuple[str, str, bytes]]:
    """(source, url, html bytes): the WARC responses first, then saved pages, ``limit`` in all."""
    from warcio.archiveiterator import ArchiveIterator

    pages = []
    for pattern in WARCS:
        for path in sorted(glob.glob(str(data / pattern))):
            with open(path, "rb") as f:
                for record in ArchiveIterator(f):
                    if record.rec_type == "response":
                        url = record.rec_headers.get_header("WARC-Target-URI")
                        pages.append((pattern.split("/")[0], url, record.content_stream().read()))
    # The saved pages in turn from each set, so that a smaller --docs still samples every set.
    sets = [sorted(glob.glob(str(data / pattern))) for pattern in PAGES]
    for i in range(max(map(len, sets))):
        for pattern, paths in zip(PAGES, sets):
            if i < len(paths) and len(pages) < limit:
                body = Path(paths[i]).read_bytes()
                body = gzip.decompress(body) if paths[i].endswith(".gz") else body
                url = "https://pages.invalid/" + Path(paths[i]).relative_to(data).as_posix()
                pages.append((pattern.split("/")[0], url, body))
    return pages[:limit]


def _extract(page: tuple[str, str, bytes]) -> tuple[str, str, str] | None:
    source, url, body = page
    doc = extract_document(body, url)
    return (source, url, doc["text"]) if doc else None


def load_corpus(data: Path, limit: int, workers: int) -> list[tuple[str, str, str]]:
    """(source, url, text) of every page with some main text, exact duplicate texts once."""
    pages = raw_pages(data, limit)
    with ProcessPoolExecutor(workers) as pool:
        extracted = list(pool.map(_extract, pages, chunksize=8))
    seen, corpus = set(), []
    for item in extracted:
        if item and item[2].strip() and item[2] not in seen:
            seen.add(item[2])
            corpus.append(item)
    return corpus


# --- 2. agreement and speed against datatrove -----------------------------------------------------
def family_pairs():
    """(family, our rule, datatrove's filter), each with its default settings."""
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                            GopherRepetitionFilter)

    from llm_core.filters.rules import C4, FineWeb, GopherQuality, GopherRepetition

    return [("gopher_quality", GopherQuality(), GopherQualityFilter()),
            ("gopher_repetition", GopherRepetition(), GopherRepetitionFilter()),
            ("c4", C4(), C4QualityFilter()),
            ("fineweb", FineWeb(), FineWebQualityFilter())]


def run_ours(rule, docs: list[Document]) -> list[tuple[bool, str | None, float | None]]:
    out = []
    for doc in docs:
        verdict = rule.check(doc)
        out.append((verdict.reason is None, verdict.reason, verdict.value))
    return out


def run_datatrove(flt, docs) -> list[tuple[bool, str | None]]:
    out = []
    for doc in docs:
        try:
            result = flt.filter(doc)
        except Exception as error:  # noqa: BLE001 (ZeroDivisionError on a text without words, say)
            out.append((False, f"error: {type(error).__name__}"))
            continue
        keep, reason = (result if isinstance(result, tuple) else (result, None))
        out.append((bool(keep), reason))
    return out


def gopher_without_alpha_test(texts: list[str]) -> float:
    """Gopher quality agreement with the 80%-of-words-with-a-letter test off on both sides: datatrove
    counts its tokenizer's punctuation tokens as words without letters, we count whitespace words
    (a deliberate difference, see gopher_quality.py); this isolates the other tests."""
    from datatrove.data import Document as DtDocument
    from datatrove.pipeline.filters import GopherQualityFilter

    from llm_core.filters.rules.gopher_quality import GopherQuality, GopherQualityConfig

    ours = run_ours(GopherQuality(GopherQualityConfig(max_non_alpha_words_ratio=1.0)),
                    [Document(text, {"lang": "en"}) for text in texts])
    theirs = run_datatrove(GopherQualityFilter(max_non_alpha_words_ratio=None),
                           [DtDocument(text=text, id=str(i)) for i, text in enumerate(texts)])
    return sum(o[0] == t[0] for o, t in zip(ours, theirs)) / len(texts)


def compare_with_datatrove(texts: list[str], langs: list[str], urls: list[str], rounds: int) -> dict:
    from datatrove.data import Document as DtDocument

    def ours_docs():
        return [Document(text, {"lang": "en"}) for text in texts]

    def dt_docs():  # fresh objects: datatrove's C4 rewrites doc.text
        return [DtDocument(text=text, id=str(i)) for i, text in enumerate(texts)]

    results = {}
    for family, rule, flt in family_pairs():
        # Warm-up, untimed: spaCy, our segmenters and tables load on first use.
        warm = [i for i, lang in enumerate(langs) if lang in ("en", "de", "zh", "ja")][:40]
        run_ours(rule, [Document(texts[i], {"lang": "en"}) for i in warm])
        run_datatrove(flt, [DtDocument(text=texts[i], id=str(i)) for i in warm])
        ours_s, theirs_s = [], []
        for _ in range(rounds):  # interleaved: the machine's load hits both alike
            batch = dt_docs()
            started = time.perf_counter()
            theirs = run_datatrove(flt, batch)
            theirs_s.append(time.perf_counter() - started)
            batch = ours_docs()
            started = time.perf_counter()
            ours = run_ours(rule, batch)
            ours_s.append(time.perf_counter() - started)
        agree = [o[0] == t[0] for o, t in zip(ours, theirs)]
        en = [a for a, lang in zip(agree, langs) if lang == "en"]
        disagreements = Counter()
        examples = defaultdict(list)
        for i, (o, t) in enumerate(zip(ours, theirs)):
            if o[0] != t[0]:
                key = f"ours {'keep' if o[0] else o[1]} / datatrove {'keep' if t[0] else t[1]}"
                disagreements[key] += 1
                if len(examples[key]) < 2:
                    examples[key].append(f"[{langs[i]}] {urls[i]} value={o[2]!r} text={texts[i][:160]!r}")
        results[family] = {
            "agreement": sum(agree) / len(agree),
            "agreement_en": sum(en) / len(en) if en else None,
            "disagreeing_docs": len(agree) - sum(agree),
            "kept_ours": sum(o[0] for o in ours),
            "kept_datatrove": sum(t[0] for t in theirs),
            "ours_s": min(ours_s),
            "datatrove_s": min(theirs_s),
            "speedup": min(theirs_s) / min(ours_s),
            "disagreements": dict(disagreements.most_common()),
        }
        log(f"\n[{family}] agreement {results[family]['agreement']:.3f} "
            f"(en {results[family]['agreement_en']}), kept ours {results[family]['kept_ours']} / "
            f"datatrove {results[family]['kept_datatrove']} of {len(texts)}; "
            f"ours {min(ours_s):.2f}s datatrove {min(theirs_s):.2f}s")
        for key, count in disagreements.most_common():
            log(f"  {count:4d}  {key}")
            for example in examples[key]:
                log(f"          {example}")
    return results


# --- 3. stage throughput -------------------------------------------------------------------------
def corpus_table(corpus: list[tuple[str, str, str]], repeat: int) -> pa.Table:
    now = datetime.now(timezone.utc)
    rows = [{"id": document_id(f"{url}#{k}"), "url": url, "source": source, "fetched_at": now, "text": text,
             "title": None, "lang": None, "lang_score": None}
            for k in range(repeat) for source, url, text in corpus]
    return pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)


def stage_config():
    from llm_core.filters.config import FilterConfig

    defaults = FilterConfig()
    rules = [name for name in defaults.rules if name != "quality_classifier"]
    return FilterConfig(rules=rules, language={"languages": []})


def per_rule_seconds(table: pa.Table) -> dict[str, float]:
    """Each configured rule alone over every document of ``table``, in this process."""
    from llm_core.filters.runner import apply_rules

    batch = table.combine_chunks().to_batches()[0]
    seconds = {}
    rules = stage_config().build_rules()
    for rule in rules:
        apply_rules([rule], batch.slice(0, 8))  # load its model or segmenters first
        started = time.perf_counter()
        apply_rules([rule], batch)
        seconds[rule.name] = time.perf_counter() - started
    apply_rules(rules, batch.slice(0, 8))
    started = time.perf_counter()
    apply_rules(rules, batch)
    seconds["all_in_order"] = time.perf_counter() - started
    return seconds


def stage_throughput(table: pa.Table, tmp: Path, cores: int) -> dict:
    """The stage on the corpus in ``cores`` Parquet files (so local[*] can give every core a
    share: one file of one row group is one Spark task, whatever the cores), once with the
    Python workers cold (what a pipeline run sees) and once warm; then warm on one file."""
    from llm_core.filters import filter_documents
    from llm_core.spark import SparkConfig, get_spark

    split_dir, one_dir = tmp / "stage_in", tmp / "stage_in_one_file"
    size = -(-table.num_rows // cores)
    for i in range(cores):
        write_documents(table.slice(i * size, size), split_dir, name=f"part-{i:05d}.parquet")
    write_documents(table, one_dir)
    spark_config = SparkConfig(master="local[*]")
    started = time.perf_counter()
    get_spark(spark_config)
    session_s = time.perf_counter() - started
    config = stage_config()
    runs = []
    for attempt, docs_dir in enumerate((split_dir, split_dir, one_dir)):
        started = time.perf_counter()
        stats = filter_documents(config, spark_config, docs_dir, tmp / f"stage_out_{attempt}")
        runs.append((time.perf_counter() - started, stats))
        log(f"stage run {attempt}: {stats['docs_in']} docs in {runs[-1][0]:.1f}s")
    (cold_s, stats), (warm_s, _), (one_file_s, _) = runs
    return {"rules": config.rules, "languages": "all (filter.language.languages = [])", "input_files": cores,
            "spark_session_s": session_s, "cold_s": cold_s, "warm_s": warm_s, "warm_one_file_s": one_file_s,
            "docs_in": stats["docs_in"], "docs_out": stats["docs_out"], "dropped": stats["dropped"]}


# --- 4. language ID, 5. PII ----------------------------------------------------------------------
def langid_figures(data: Path, per_language: int | None) -> dict:
    from llm_core.filters.evaluation import language_accuracy, lingua_samples, udhr_samples

    started = time.perf_counter()
    lingua = language_accuracy(lingua_samples(data / "langid_lingua_testdata", limit=per_language))
    lingua_s = time.perf_counter() - started
    udhr_zip = data / "nltk_data_corpora" / "udhr2.zip"
    udhr_paragraphs = language_accuracy(udhr_samples(udhr_zip, min_chars=200))
    udhr_whole = language_accuracy(udhr_samples(udhr_zip))
    return {"lingua": lingua, "lingua_s": lingua_s, "udhr_paragraphs": udhr_paragraphs, "udhr_whole": udhr_whole}


def pii_figures() -> dict:
    from llm_core.filters.evaluation import score_pii

    path = REPO / "tests" / "data" / "pii_labelled.jsonl"
    examples = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {"examples": len(examples), "overlap": score_pii(examples), "exact": score_pii(examples, match="exact")}



def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=1000, help="pages to extract at most (WARC responses first)")
    parser.add_argument("--repeat", type=int, default=3, help="times the corpus is repeated for the Spark stage")
    parser.add_argument("--rounds", type=int, default=2, help="timed passes per family against datatrove, interleaved (best kept)")
    parser.add_argument("--per-language", type=int, default=None, help="lingua sentences per language (default all)")
    parser.add_argument("--large", action="store_true",
                        help="every page of the shared data (~1,550), the stage on it repeated 10 times, 3 rounds")
    args = parser.parse_args()
    if args.large:
        args.docs, args.repeat, args.rounds = max(args.docs, 100_000), max(args.repeat, 10), max(args.rounds, 3)

    data = shared_data()
    cores = os.cpu_count() or 1
    figures: dict = {"benchmark": "filters"}

    started = time.perf_counter()
    corpus = load_corpus(data, args.docs, cores)
    extract_s = time.perf_counter() - started
    texts = [text for _, _, text in corpus]
    urls = [url for _, url, _ in corpus]
    langs = [detect_language(text)[0] for text in texts]
    log(f"corpus: {len(corpus)} documents, {sum(map(len, texts)):,} characters, extracted in {extract_s:.1f}s; "
        f"languages {Counter(langs).most_common(8)}")

    families = compare_with_datatrove(texts, langs, urls, args.rounds)
    families["gopher_quality"]["agreement_without_alpha_test"] = gopher_without_alpha_test(texts)

    with tempfile.TemporaryDirectory(prefix="llmpipe-bench-filters-") as tmp:
        table = corpus_table(corpus, args.repeat)
        rule_s = per_rule_seconds(corpus_table(corpus, 1))
        stage = stage_throughput(table, Path(tmp), cores)

    langid = langid_figures(data, args.per_language)
    pii = pii_figures()

    ours_total = sum(f["ours_s"] for f in families.values())
    theirs_total = sum(f["datatrove_s"] for f in families.values())
    figures.update({
        "langid_accuracy_mean": mean(langid["lingua"].values()),
        "langid_accuracy_mean_udhr": mean(langid["udhr_paragraphs"].values()),
        "langid_accuracy_mean_udhr_whole": mean(langid["udhr_whole"].values()),
        "docs_per_s_per_core": stage["docs_in"] / stage["cold_s"] / cores,
        "docs_per_s_per_core_warm": stage["docs_in"] / stage["warm_s"] / cores,
        "docs_per_s_per_core_warm_one_file": stage["docs_in"] / stage["warm_one_file_s"] / cores,
        "agreement_with_datatrove": mean(f["agreement"] for f in families.values()),
        "agreement_with_datatrove_en": mean(f["agreement_en"] for f in families.values()),
        "speedup_vs_datatrove": theirs_total / ours_total,
        "pii_precision": pii["overlap"]["all"]["precision"],
        "pii_recall": pii["overlap"]["all"]["recall"],
        "corpus": {"docs": len(corpus), "chars": sum(map(len, texts)), "en_docs": langs.count("en"),
                   "languages": dict(Counter(langs).most_common()),
                   "sources": dict(Counter(source for source, _, _ in corpus)), "extract_s": extract_s},
        "datatrove": {
            "version": __import__("importlib.metadata").metadata.version("datatrove"),
            "how": "filter() called directly on datatrove.data.Document objects (no executor, no stats), "
                   "default settings (English tokenizer: spaCy blank 'en'); ours: Rule().check(Document(text, "
                   "{'lang': 'en'})); best of the interleaved rounds",
            "rounds": args.rounds,
            "families": {name: {k: v for k, v in f.items() if k != "disagreements"} for name, f in families.items()},
            "disagreements": {name: f["disagreements"] for name, f in families.items()},
            "ours_s": ours_total, "datatrove_s": theirs_total,
        },
        "stage": {**stage, "repeat": args.repeat, "cores": cores, "rule_s_python": rule_s,
                  "python_docs_per_s_one_core": len(corpus) / rule_s["all_in_order"]},
        "langid": {"lingua_per_language": langid["lingua"], "lingua_sentences_per_language": args.per_language or "all",
                   "udhr_paragraphs_per_language": langid["udhr_paragraphs"],
                   "udhr_whole_per_language": langid["udhr_whole"], "lingua_s": langid["lingua_s"]},
        "pii": {"examples": pii["examples"], "per_kind_overlap": pii["overlap"],
                "exact_precision": pii["exact"]["all"]["precision"], "exact_recall": pii["exact"]["all"]["recall"]},
        "machine": f"{platform.machine()}, {cores} cores, Python {platform.python_version()}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    })
    print(json.dumps(rounded(figures)))


if __name__ == "__main__":
    main()
