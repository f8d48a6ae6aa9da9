"""Ingest: our crawl stage's WARC ingest (one Spark job) against datatrove, same files.

On real data from the shared folder (``LLMPIPE_SHARED_DATA``, default ``../shared/data``);
nothing is written into the repository (a temporary directory holds the WARC files and
both outputs).

1. Corpus: every saved page of the extraction test sets (trafilatura's ``eval`` and
   ``cache``, Scrapinghub's, Mozilla Readability's: ~1,340 pages), each written as an HTTP
   200 ``response`` record with its ``request`` record, as a crawler writes them, into
   ``--files`` gzipped WARC files (warcio, one gzip member per record), ``--repeat`` times
   (new URLs each time).
2. Ours: ``llm_core.crawl.ingest.ingest`` on Spark ``local[*]`` (FastWARC reading, our
   decoding, trafilatura with metadata), ``min_text_chars=0`` so that, like datatrove,
   every page with any main text is kept. The Spark session is started before the clock
   (its start is reported apart: ``spark_start_s``); the run is timed as the stage runs it
   (``ours_s``: Python workers start and import trafilatura inside it) and again in the
   same session (``ours_warm_s``: the per-page cost alone).
3. datatrove 0.10.1: ``WarcReader`` (warcio) -> ``Trafilatura`` extractor (its defaults:
   ``favour_precision=True``, ``deduplicate=True``, 1 s timeout per page in a sandbox
   process) -> ``JsonlWriter``, run by ``LocalPipelineExecutor`` with one task per file and
   one worker per core; then the same pipeline with our ``extract()`` in place of
   datatrove's extractor (``*_same_extraction``), so the engines compare on the same work
   per page. datatrove's reader asks libmagic what a record without a payload-type header
   holds and skips what it does not call HTML, so it extracts fewer pages.
4. Reading alone: records per second through FastWARC and through warcio, every payload read.

The last line printed is one JSON object (``pages_per_s``, ``speedup_vs_datatrove``,
``docs_out``, ``docs_out_datatrove`` and their detail). Default size: ~2,700 records,
about 4 minutes on 2 cores (extraction is nearly all of it, on both sides).
Usage: .venv/bin/python benchmarks/ingest.py [--files N] [--repeat K] [--pages N]
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
from datetime import datetime, timezone
from io import BytesIO
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from support import log, rounded, shared_data  # noqa: E402

PAGES = ("html_trafilatura/eval/*.html.gz", "html_trafilatura/cache/*.html", "html_scrapinghub_aeb/html/*.html.gz",
         "html_mozilla_readability/test-pages/*/source.html.gz")


def pages(data: Path) -> list[tuple[str, bytes]]:
    """(path under the data folder, HTML bytes) of every saved page."""
    out = []
    for pattern in PAGES:
        for path in sorted(glob.glob(str(data / pattern))):
            body = Path(path).read_bytes()
            body = gzip.decompress(body) if path.endswith(".gz") else body
            out.append((Path(path).relative_to(data).as_posix(), body))
    return out


def write_warcs(corpus: list[tuple[str, bytes]], folder: Path, files: int, repeat: int) -> int:
    """Request + response records of every page, spread round-robin over ``files`` WARC
    files; returns the number of records written."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    folder.mkdir(parents=True)
    handles = [open(folder / f"bench-{i:05d}.warc.gz", "wb") for i in range(files)]
    writers = [WARCWriter(h, gzip=True) for h in handles]
    records = 0
    try:
        for copy in range(repeat):
            for n, (name, body) in enumerate(corpus):
                writer = writers[(copy * len(corpus) + n) % files]
                path = quote(name)
                url = f"https://pages{copy}.invalid/{path}"
                request = StatusAndHeaders(f"GET /{path} HTTP/1.1", [("Host", f"pages{copy}.invalid")],
                                           is_http_request=True)
                writer.write_record(writer.create_warc_record(url, "request", http_headers=request))
                response = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
                writer.write_record(writer.create_warc_record(url, "response", payload=BytesIO(body),
                                                              http_headers=response))
                records += 2
    finally:
        for handle in handles:
            handle.close()
    return records


def run_ours(warcs: Path, out: Path) -> dict:
    from llm_core.crawl.config import CrawlConfig
    from llm_core.crawl.ingest import ingest
    from llm_core.spark import SparkConfig, get_spark

    spark_config = SparkConfig(master="local[*]", conf={"spark.ui.enabled": "false"})
    started = time.perf_counter()
    get_spark(spark_config).range(4).count()  # the JVM, the session and a first job, before the clock
    spark_start = time.perf_counter() - started
    config = CrawlConfig(warc=[str(warcs / "*.warc.gz")], min_text_chars=0)
    started = time.perf_counter()
    stats = ingest(config, spark_config, [], out / "cold")
    seconds = time.perf_counter() - started
    # Again in the same session: Python workers up, trafilatura imported, the JVM's code compiled.
    started = time.perf_counter()
    ingest(config, spark_config, [], out / "warm")
    return {"seconds": seconds, "warm_s": time.perf_counter() - started, "spark_start_s": spark_start, "stats": stats}


def run_datatrove(warcs: Path, out: Path, files: int, cores: int, extractor=None) -> dict:
    """datatrove's pipeline; ``extractor``: a step in place of its Trafilatura extractor."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import JsonlWriter

    executor = LocalPipelineExecutor(
        pipeline=[WarcReader(str(warcs), glob_pattern="*.warc.gz"), extractor or Trafilatura(),
                  JsonlWriter(str(out / "docs"))],
        tasks=files, workers=cores, logging_dir=str(out / "logs"))
    started = time.perf_counter()
    executor.run()
    seconds = time.perf_counter() - started
    docs = sum(1 for path in (out / "docs").glob("*.jsonl.gz") for _ in gzip.open(path, "rt"))
    steps = json.loads((out / "logs" / "stats.json").read_text())
    reader, extract = steps[0]["stats"], steps[1]["stats"]
    return {"seconds": seconds, "docs_out": docs, "pages_read": reader.get("documents", {}).get("total", 0),
            "timeouts": extract.get("timeout", {}).get("total", 0) if isinstance(extract.get("timeout"), dict)
            else extract.get("timeout", 0)}


class OurExtraction:
    """Our extraction (``llm_core.crawl.extract.extract``) as a datatrove step, to compare
    the engines on the same work per page. datatrove's reader hands over decoded text."""

    def __new__(cls):
        from datatrove.pipeline.base import PipelineStep

        class Step(PipelineStep):
            name = "llmpipe extract"
            type = "🛢 - EXTRAC"

            def run(self, data, rank: int = 0, world_size: int = 1):
                from llm_core.crawl.extract import extract

                for doc in data:
                    page = extract(doc.text.encode("utf-8"), doc.metadata.get("url"))
                    if isinstance(page, dict):
                        doc.text = page["text"]
                        self.stat_update("forwarded")
                        yield doc
        return Step()


def read_only(warcs: Path) -> dict:
    """Records per second through each reader, every payload read, best of 2."""
    from fastwarc.warc import ArchiveIterator as FastIterator
    from warcio.archiveiterator import ArchiveIterator as WarcioIterator

    files = sorted(warcs.glob("*.warc.gz"))
    def fast(path: Path) -> int:
        return sum(1 for r in FastIterator(str(path)) if r.reader.read() is not None)

    def slow(path: Path) -> int:
        with open(path, "rb") as f:
            return sum(1 for r in WarcioIterator(f) if r.content_stream().read() is not None)

    readers = {"fastwarc": fast, "warcio": slow}
    rates = {}
    for name, count in readers.items():
        best = float("inf")
        for _ in range(2):
            started = time.perf_counter()
            records = sum(count(p) for p in files)
            best = min(best, time.perf_counter() - started)
        rates[name] = records / best
    return rates



def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=4, help="WARC files the pages are spread over")
    parser.add_argument("--repeat", type=int, default=1, help="copies of the corpus (new URLs each)")
    parser.add_argument("--pages", type=int, default=None, help="at most this many saved pages (default all)")
    args = parser.parse_args()
    data = shared_data()
    cores = os.cpu_count() or 1
    corpus = pages(data)[:args.pages]
    with tempfile.TemporaryDirectory(prefix="llmpipe-bench-ingest-") as tmp:
        warcs = Path(tmp) / "warc"
        records = write_warcs(corpus, warcs, args.files, args.repeat)
        size = sum(p.stat().st_size for p in warcs.iterdir())
        log(f"{records} records ({len(corpus) * args.repeat} pages) in {args.files} WARC files, {size / 1e6:.1f} MB")
        reading = read_only(warcs)
        ours = run_ours(warcs, Path(tmp) / "ours")
        log(f"ours: {ours['stats']['docs_out']} documents in {ours['seconds']:.1f}s "
            f"(+{ours['spark_start_s']:.1f}s Spark start; {ours['warm_s']:.1f}s run again warm)")
        theirs = run_datatrove(warcs, Path(tmp) / "datatrove", args.files, cores)
        log(f"datatrove: {theirs['docs_out']} documents in {theirs['seconds']:.1f}s")
        same = run_datatrove(warcs, Path(tmp) / "datatrove-ours", args.files, cores, OurExtraction())
        log(f"datatrove with our extraction: {same['docs_out']} documents in {same['seconds']:.1f}s")

    import datatrove
    import trafilatura

    html_pages = len(corpus) * args.repeat
    stats = ours["stats"]
    figures = {
        "benchmark": "ingest",
        "pages_per_s": html_pages / ours["seconds"],
        "pages_per_s_datatrove": html_pages / theirs["seconds"],
        "speedup_vs_datatrove": theirs["seconds"] / ours["seconds"],
        "speedup_vs_datatrove_with_spark_start": theirs["seconds"] / (ours["seconds"] + ours["spark_start_s"]),
        "docs_out": stats["docs_out"], "docs_out_datatrove": theirs["docs_out"],
        "ours_s": ours["seconds"], "ours_warm_s": ours["warm_s"], "datatrove_s": theirs["seconds"],
        "spark_start_s": ours["spark_start_s"],
        "speedup_vs_datatrove_warm": theirs["seconds"] / ours["warm_s"],
        "speedup_vs_datatrove_same_extraction": same["seconds"] / ours["seconds"],
        "docs_out_datatrove_same_extraction": same["docs_out"], "datatrove_same_extraction_s": same["seconds"],
        "read_records_per_s_fastwarc": reading["fastwarc"], "read_records_per_s_warcio": reading["warcio"],
        "detail": {"records": records, "pages": html_pages, "files": args.files, "warc_mb": size / 1e6,
                   "skipped": stats["records_skipped"], "tasks": stats["tasks"], "chars_out": stats["chars_out"],
                   "datatrove": datatrove.__version__ if hasattr(datatrove, "__version__") else "0.10.1",
                   "datatrove_settings": "WarcReader -> Trafilatura() defaults -> JsonlWriter; "
                                         f"LocalPipelineExecutor(tasks={args.files}, workers={cores})",
                   "datatrove_pages_read": theirs["pages_read"], "datatrove_timeouts": theirs["timeouts"],
                   "datatrove_same_extraction": "the same pipeline, our extract() in place of Trafilatura()",
                   "ours_settings": "ingest(), Spark local[*], min_text_chars=0"},
        "trafilatura": trafilatura.__version__,
        "machine": f"{platform.machine()}, {cores} cores, Python {platform.python_version()}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    print(json.dumps(rounded(figures)))


if __name__ == "__main__":
    main()
