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
