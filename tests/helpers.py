"""Small builders of test corpora from the real data in ../shared/data."""

import pyarrow as pa

from llm_core.documents import DOCUMENT_SCHEMA, write_documents


def shakespeare_docs(shared_data, tmp_path, n_docs=80):
    text = (shared_data / "text_tinyshakespeare" / "input.txt").read_text()
    scenes = [s for s in text.split("\n\n") if s.strip()]
    chunk = len(scenes) // n_docs
    texts = ["\n\n".join(scenes[i * chunk:(i + 1) * chunk]) for i in range(n_docs)]
    rows = [{"id": f"doc{i}", "url": f"http://x/{i}", "source": "local", "text": t} for i, t in enumerate(texts)]
    write_documents(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), tmp_path / "docs")
    return tmp_path / "docs", texts


def tokenized_shakespeare(shared_data, tmp_path, config):
    """Shakespeare documents through the tokenizer stage: (output dir, stats, document texts)."""
    from llm_core.tokenizer import build_tokenizer_and_shards

    docs_dir, texts = shakespeare_docs(shared_data, tmp_path)
    out = tmp_path / "tokenizer"
    out.mkdir()
    return out, build_tokenizer_and_shards(config, docs_dir, out), texts


def crawl_pages(config, work_dir):
    """Run the live crawler alone (no extraction): its stats and the URLs of the pages (HTTP 200)
    in its WARC files, in order, after the stage's check that it got any page."""
    from warcio.archiveiterator import ArchiveIterator

    from llm_core.crawl.collect import check_crawl
    from llm_core.crawl.crawler import crawl, warc_files

    stats = crawl(config, work_dir)
    check_crawl(stats, len(config.seeds))
    urls = []
    for path in warc_files(work_dir):
        with open(path, "rb") as f:
            urls += [r.rec_headers.get_header("WARC-Target-URI") for r in ArchiveIterator(f)
                     if r.rec_type == "response" and r.http_headers.get_statuscode() == "200"]
    return stats, urls
