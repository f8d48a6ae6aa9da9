"""The ingest half of the crawl stage: WARC/ARC files, local corpora, one Spark job.

Two Spark jobs in all: one ingest of every WARC and ARC file of the shared data beside the
crawler's (damaged) WARC files, pages in other encodings and every local format, asserted
per file; one where nothing is kept. Every other error is found before Spark starts.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from io import BytesIO
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_core.crawl.config import HTML_TYPES, CrawlConfig
from llm_core.crawl.extract import decode_html, extract_document
from llm_core.crawl.ingest import ingest
from llm_core.crawl.warc_read import Page, read_archive
from llm_core.documents import DOCUMENT_SCHEMA, read_documents
from llm_core.errors import StageError

# Per shared file: records read, documents kept, records skipped by reason (min_text_chars 200).
EXPECTED = {
    "warc_copycat_wayback/snapshot-wayback-topic-02.warc.gz": (129, 127, {"not_response": 1, "too_little_text": 1}),
    "warc_dolma_cc_samples/sample-0000.warc.gz": (48, 22, {"not_response": 26}),
    "warc_dolma_cc_samples/sample-0001.warc.gz": (34, 15, {"not_response": 19}),
    "warc_resiliparse_testdata/block-sized-records.warc.gz": (3, 0, {"not_response": 3}),
    "warc_resiliparse_testdata/clipped.warc.gz": (1, 0, {"truncated": 1}),
    "warc_resiliparse_testdata/clueweb-quirk.warc.gz": (30, 29, {"not_response": 1}),
    "warc_resiliparse_testdata/warcfile.warc.gz": (50, 15, {"not_response": 34, "too_little_text": 1}),
    "warc_warcio_testdata/bad.arc": (4, 0, {"http_status": 1, "not_response": 3}),
    "warc_warcio_testdata/example-bad-non-chunked.warc.gz": (6, 0, {"not_response": 5, "too_little_text": 1}),
    "warc_warcio_testdata/example-bad.warc.gz.bad": (6, 0, {"http_status": 1, "not_response": 4,
                                                           "too_little_text": 1}),
    "warc_warcio_testdata/example-digest.warc": (4, 0, {"not_response": 4}),
    "warc_warcio_testdata/example-iana.org-chunked.warc": (3, 1, {"not_response": 2}),
    "warc_warcio_testdata/example-resource.warc.gz": (3, 0, {"not_response": 3}),
    "warc_warcio_testdata/example-space-in-target-uri.warc.gz": (2, 0, {"not_response": 2}),
    "warc_warcio_testdata/example-space-in-url.arc": (2, 0, {"not_response": 1, "too_little_text": 1}),
    # The response's gzip body is cut short, and its Content-Length runs into the next record.
    "warc_warcio_testdata/example-trunc.warc": (5, 0, {"corrupt": 1, "not_response": 3, "truncated": 1}),
    "warc_warcio_testdata/example-wget-bad-target-uri.warc.gz": (6, 0, {"not_response": 5, "too_little_text": 1}),
    "warc_warcio_testdata/example-wrong-chunks.warc.gz": (2, 0, {"not_response": 1, "too_little_text": 1}),
    "warc_warcio_testdata/example.arc": (2, 0, {"not_response": 1, "too_little_text": 1}),
    "warc_warcio_testdata/example.arc.gz": (2, 0, {"not_response": 1, "too_little_text": 1}),
    "warc_warcio_testdata/example.warc": (6, 0, {"not_response": 5, "too_little_text": 1}),
    "warc_warcio_testdata/example.warc.gz": (6, 0, {"not_response": 5, "too_little_text": 1}),
    "warc_warcio_testdata/post-test.warc.gz": (6, 0, {"not_html": 3, "not_response": 3}),
}
SHARED_WARCS = ("warc_copycat_wayback", "warc_dolma_cc_samples", "warc_resiliparse_testdata", "warc_warcio_testdata")
NOT_ARCHIVES = ("SOURCES.md", "MANIFEST.jsonl")

PROSE_DE = ("<p>Die Straßenbahn fährt über die Brücke, während die Möwen über dem Rhein kreisen.</p>"
            "<p>Überall duftet es nach frischem Gebäck, und die Bäckerei öffnet schon früh am Morgen.</p>"
            "<p>Am Ufer üben zwei Straßenmusiker ein Stück, das nach Sommer und großen Plänen klingt.</p>")
PROSE_JA = ("<p>東京の朝はとても静かで、駅へ向かう人々の足音だけが通りに響いている。</p>"
            "<p>川沿いの公園では、年配の夫婦がゆっくりと散歩をしながら桜の木を見上げていた。</p>"
            "<p>商店街のパン屋は六時に店を開け、焼きたてのパンの香りが辺りに広がっていく。</p>"
            "<p>昼になると、会社員たちが小さな食堂に集まり、季節の定食を楽しみながら語り合う。</p>"
            "<p>夕方には子どもたちが学校から帰り、公園の広場でボールを追いかけて遊んでいる。</p>")
PROSE_RU = ("<p>Утром над рекой поднимается туман, и рыбаки медленно выходят на старый деревянный причал.</p>"
            "<p>В маленькой пекарне на углу уже горит свет, и запах свежего хлеба разносится по всей улице.</p>"
            "<p>Днём на площади собираются студенты, они спорят о книгах, музыке и планах на лето.</p>"
            "<p>Вечером город затихает, только трамвай звенит на повороте у старого театра.</p>")


def html(title: str, body: str, head: str = "", lang: str = "") -> str:
    lang_attr = f' lang="{lang}"' if lang else ""
    return (f"<html{lang_attr}><head>{head}<title>{title}</title></head><body><article><h1>{title}</h1>"
            f"{body}</article></body></html>")


def write_warc(path: Path, pages: list[tuple[str, bytes, str]]) -> None:
    """A gzipped WARC file (warcio, one member per record) of (url, body, Content-Type) responses."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for url, body, content_type in pages:
            headers = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(url, "response", payload=BytesIO(body),
                                                          http_headers=headers))


def damaged_copies(shared_data: Path, tmp: Path) -> tuple[Path, Path]:
    """A real WARC file with garbage in the middle of one record's gzip member, and its
    uncompressed form with one record's header line broken."""
    from fastwarc.warc import ArchiveIterator

    source = shared_data / "warc_dolma_cc_samples" / "sample-0000.warc.gz"
    data = bytearray(source.read_bytes())
    starts = [record.stream_pos for record in ArchiveIterator(str(source))]
    middle = (starts[4] + starts[5]) // 2  # inside record 4 (a response)
    data[middle:middle + 100] = b"\xaa" * 100
    gz = tmp / "damaged.warc.gz"
    gz.write_bytes(bytes(data))
    plain = bytearray(gzip.decompress(source.read_bytes()))
    header = plain.find(b"WARC/1.0", 20_000)
    plain[header:header + 8] = b"XXXX/1.0"
    flat = tmp / "damaged.warc"
    flat.write_bytes(bytes(plain))
    return gz, flat


def outcomes(path: Path) -> Counter:
    return Counter("page" if isinstance(r, Page) else r for r in read_archive(path, HTML_TYPES))


# --- reading and decoding, no Spark -------------------------------------------------------------

def test_a_damaged_warc_is_read_past_the_damage_and_no_record_twice(shared_data, tmp_path):
    gz, flat = damaged_copies(shared_data, tmp_path)
    whole = outcomes(shared_data / "warc_dolma_cc_samples" / "sample-0000.warc.gz")
    assert whole == {"not_response": 26, "page": 22}
    # The damaged record is lost and counted; every record after it is read.
    assert outcomes(gz) == {"not_response": 26, "page": 21, "corrupt": 1}
    assert outcomes(flat) == {"not_response": 25, "page": 22, "corrupt": 1}
    urls = [r.url for r in read_archive(gz, HTML_TYPES) if isinstance(r, Page)]
    assert len(urls) == len(set(urls)) == 21


def test_pages_are_decoded_by_http_charset_then_meta_then_detection():
    latin1 = html("Grüße aus Köln", PROSE_DE).encode("iso-8859-1")
    assert "Grüße" in decode_html(latin1, "iso-8859-1")
    sjis = html("東京の一日", PROSE_JA, head='<meta charset="Shift_JIS">').encode("shift_jis")
    assert "東京の朝" in decode_html(sjis)  # no HTTP charset: the page's own declaration
    cp1251 = html("Утро", PROSE_RU * 2).encode("cp1251")
    assert "рыбаки" in decode_html(cp1251)  # nothing declared: charset-normalizer's guess
    # A wrong HTTP charset that cannot decode the bytes gives way to the page's declaration.
    assert "東京の朝" in decode_html(sjis, "utf-8")


def test_extract_document_keeps_its_two_argument_call():
    page = html("Ein Morgen am Rhein", PROSE_DE * 2, lang="de").encode()
    doc = extract_document(page, "https://example.org/rhein")
    assert doc["url"] == "https://example.org/rhein" and doc["source"] == "crawl"
    assert "Straßenbahn" in doc["text"] and doc["title"] == "Ein Morgen am Rhein" and doc["lang_hint"] == "de"
    assert set(doc) == set(DOCUMENT_SCHEMA.names)
    assert extract_document(b"<html><body></body></html>", "https://example.org/empty") is None


def test_inputs_that_cannot_be_read_fail_before_spark_naming_the_file(shared_data, tmp_path):
    spark_config = None  # never reached: each error is found while listing and checking the inputs
    for name in NOT_ARCHIVES:
        path = shared_data / "warc_warcio_testdata" / name
        with pytest.raises(StageError, match=f"{path}.* is not a WARC or ARC file"):
            ingest(CrawlConfig(warc=[str(path)]), spark_config, [], tmp_path / "out")
    with pytest.raises(StageError, match=r"crawl.warc: '.*nothing-\*.warc.gz' matches no file"):
        ingest(CrawlConfig(warc=[str(tmp_path / "nothing-*.warc.gz")]), spark_config, [], tmp_path / "out")
    with pytest.raises(StageError, match="crawl.local: '.*missing-folder' does not exist"):
        ingest(CrawlConfig(local=[{"path": str(tmp_path / "missing-folder"), "format": "text"}]), spark_config, [],
               tmp_path / "out")
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"body": "no text field here"}\n')
    with pytest.raises(StageError, match=f"{jsonl} has no field 'text'"):
        ingest(CrawlConfig(local=[{"path": str(jsonl), "format": "jsonl"}]), spark_config, [], tmp_path / "out")
    table = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"content": ["some text"]}), table)
    with pytest.raises(StageError, match=f"{table} has no column 'body'"):
        ingest(CrawlConfig(local=[{"path": str(table), "format": "parquet", "text_field": "body"}]), spark_config,
               [], tmp_path / "out")
    with pytest.raises(StageError, match="nothing to ingest"):
        ingest(CrawlConfig(), spark_config, [], tmp_path / "out")


# --- the Spark job ------------------------------------------------------------------------------

def local_corpora(shared_data: Path, tmp: Path) -> list[dict]:
    """One folder per local format, each with a record that must be skipped."""
    pages = tmp / "pages"
    pages.mkdir()
    for source in sorted((shared_data / "html_trafilatura" / "cache").glob("*.html"))[:3]:
        (pages / source.name).write_bytes(source.read_bytes())
    gz_page = sorted((shared_data / "html_scrapinghub_aeb" / "html").glob("*.html.gz"))[0]
    (pages / gz_page.name).write_bytes(gz_page.read_bytes())
    (pages / "plain.html").write_text(html("Ein Morgen am Rhein", PROSE_DE * 2, lang="de"))
    texts = tmp / "texts"
    (texts / "nested").mkdir(parents=True)
    (texts / "utf8.txt").write_text("Plain UTF-8 text, one document per file. " * 5)
    (texts / "nested" / "latin1.txt").write_bytes(("Grüße aus Köln, wo die Straßenbahn über die Brücke fährt. "
                                                   * 8).encode("cp1252"))
    (texts / "image.bin").write_bytes(bytes(range(256)) * 8)
    (texts / ".hidden").write_text("never read")
    rows = tmp / "rows.jsonl"
    rows.write_text("\n".join([json.dumps({"text": "first row of the corpus", "url": "https://example.org/a"}),
                               '{"text": "a line cut sh', "",
                               json.dumps({"title": "no text here"}),
                               json.dumps({"text": "   "}),
                               json.dumps({"text": "last row", "id": "row-5"})]) + "\n")
    table = tmp / "table.parquet"
    pq.write_table(pa.table({"body": ["parquet row one", "parquet row two", None], "key": ["k1", "k2", "k3"]}), table)
    return [{"path": str(pages), "format": "html"}, {"path": str(texts), "format": "text"},
            {"path": str(rows), "format": "jsonl", "id_field": "id", "url_field": "url"},
            {"path": str(table), "format": "parquet", "text_field": "body", "id_field": "key"}]


@pytest.fixture(scope="module")
def mixed(shared_data, spark_config, tmp_path_factory):
    """One ingest of everything: the crawler's WARC files (one damaged in the middle, one
    with pages in three encodings), every WARC and ARC file of the shared data, every local format."""
    tmp = tmp_path_factory.mktemp("ingest")
    gz, flat = damaged_copies(shared_data, tmp)
    encodings = tmp / "encodings.warc.gz"
    write_warc(encodings, [
        ("https://example.de/koeln", html("Grüße aus Köln", PROSE_DE * 2).encode("iso-8859-1"),
         "text/html; charset=iso-8859-1"),
        ("https://example.jp/tokyo", html("東京の一日", PROSE_JA * 2, head='<meta charset="Shift_JIS">', lang="ja")
         .encode("shift_jis"), "text/html"),
        ("https://example.ru/utro", html("Утро", PROSE_RU * 2).encode("cp1251"), "text/html"),
    ])
    shared = sorted(p for folder in SHARED_WARCS for p in (shared_data / folder).iterdir()
                    if p.name not in NOT_ARCHIVES)
    config = CrawlConfig(warc=[str(p) for p in shared], local=local_corpora(shared_data, tmp))
    out = tmp / "out"
    out.mkdir()
    stats = ingest(config, spark_config, [gz, flat, encodings], out)
    return stats, read_documents(out / "docs"), {"gz": str(gz), "flat": str(flat), "encodings": str(encodings)}, out


def test_every_shared_warc_and_arc_file_is_read_with_each_record_accounted_for(mixed, shared_data):
    stats, docs, _, _ = mixed
    per_file = {Path(f["file"]).relative_to(shared_data).as_posix(): f for f in stats["per_file"]
                if f["source"] == "warc"}
    assert {k: (v["records"], v["docs_out"], v["skipped"]) for k, v in per_file.items()} == EXPECTED
    warc_docs = docs.filter(pa.compute.equal(docs.column("source"), "warc"))
    assert warc_docs.num_rows == sum(docs_out for _, docs_out, _ in EXPECTED.values())
    # ClueWeb09's Japanese pages (EUC-JP, declared in bare-LF HTTP headers) and Common Crawl's
    # GBK / windows-1251 pages come out readable.
    clueweb = [d for d in warc_docs.to_pylist() if "uraharajuku" in (d["url"] or "") or "e-brand" in (d["title"] or "")]
    assert clueweb and all("\ufffd" not in d["text"] for d in clueweb)
    assert any("ヘッドポーター" in (d["title"] or "") for d in clueweb)
    assert any("О компании" in d["text"] for d in warc_docs.to_pylist())
    dated = [d for d in warc_docs.to_pylist() if d["date"]]
    assert len(dated) > 50 and all(len(d["date"]) == 10 for d in dated)


def test_the_crawlers_warc_files_are_read_past_damage_and_pages_decoded_by_their_charset(mixed):
    stats, docs, files, _ = mixed
    per_file = {f["file"]: (f["records"], f["docs_out"], f["skipped"]) for f in stats["per_file"]}
    assert per_file[files["gz"]] == (48, 21, {"corrupt": 1, "not_response": 26})
    assert per_file[files["flat"]] == (48, 22, {"corrupt": 1, "not_response": 25})
    assert per_file[files["encodings"]] == (3, 3, {})
    crawl = [d for d in docs.to_pylist() if d["source"] == "crawl"]
    assert len(crawl) == 21 + 22 + 3  # the two damaged copies share their pages: dedupe's work, not ours
    by_url = {d["url"]: d for d in crawl}
    assert "Straßenbahn fährt über die Brücke" in by_url["https://example.de/koeln"]["text"]
    assert by_url["https://example.de/koeln"]["title"] == "Grüße aus Köln"
    tokyo = by_url["https://example.jp/tokyo"]
    assert "東京の朝はとても静か" in tokyo["text"] and tokyo["lang_hint"] == "ja"
    assert "рыбаки медленно выходят" in by_url["https://example.ru/utro"]["text"]
    assert all(d["fetched_at"] is not None for d in crawl)


def test_local_corpora_in_every_format(mixed):
    stats, docs, _, out = mixed
    local = {Path(f["file"]).name: (f["records"], f["docs_out"], f["skipped"]) for f in stats["per_file"]
             if f["source"] == "local"}
    assert local.pop("image.bin") == (1, 0, {"undecodable": 1})
    assert local.pop("rows.jsonl") == (5, 2, {"malformed_line": 1, "missing_field": 1, "no_text": 1})
    assert local.pop("table.parquet") == (3, 2, {"no_text": 1})
    assert local.pop("utf8.txt") == local.pop("latin1.txt") == (1, 1, {})
    assert len(local) == 5 and all(counts == (1, 1, {}) for counts in local.values()), local  # HTML pages
    rows = {d["id"]: d for d in docs.to_pylist() if d["source"] == "local"}
    assert {"row-5", "k1", "k2"} <= set(rows) and rows["k1"]["text"] == "parquet row one"
    first = next(d for d in rows.values() if d["text"] == "first row of the corpus")
    assert first["url"] == "https://example.org/a" and rows["row-5"]["url"] is None
    latin1 = next(d for d in rows.values() if (d["url"] or "").endswith("latin1.txt"))
    assert latin1["text"].startswith("Grüße aus Köln") and latin1["url"].startswith("file:///")
    plain = next(d for d in rows.values() if (d["url"] or "").endswith("plain.html"))
    assert plain["title"] == "Ein Morgen am Rhein" and plain["lang_hint"] == "de"


def test_one_job_accounts_for_every_record_and_writes_only_documents(mixed):
    stats, docs, _, out = mixed
    assert stats["records_read"] == stats["docs_out"] + sum(stats["records_skipped"].values())
    assert stats["docs_out"] == docs.num_rows and stats["chars_out"] == sum(map(len, docs.column("text").to_pylist()))
    assert {name: s["files"] for name, s in stats["sources"].items()} == {"crawl": 3, "warc": len(EXPECTED),
                                                                          "local": 10}
    assert dict(Counter(docs.column("source").to_pylist())) == {n: s["docs_out"] for n, s in stats["sources"].items()}
    assert docs.schema.names == DOCUMENT_SCHEMA.names
    assert sorted(p.name for p in out.iterdir()) == ["docs"]
    # The small files share one read task; extraction is spread over both cores (4 tasks each).
    assert stats["tasks"] == {"read": 1, "extract": 8}


def test_nothing_kept_is_an_error_with_the_counts(shared_data, spark_config, tmp_path):
    only_metadata = shared_data / "warc_resiliparse_testdata" / "block-sized-records.warc.gz"
    with pytest.raises(StageError, match=r"no documents from 3 records in 1 file\(s\) \(skipped by reason: "
                                         r"\{'not_response': 3\}\); the WARC files hold no response records"):
        ingest(CrawlConfig(warc=[str(only_metadata)]), spark_config, [], tmp_path)
