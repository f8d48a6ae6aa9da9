"""External evaluation sets: reading text, JSON lines and Parquet, the errors a bad file
gives, the config's checks, and the files' contents in the evaluate stage's key."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from llm_core.config import EvaluateConfig, PipelineConfig
from llm_core.errors import StageError
from llm_core.evaluate import STAGE
from llm_core.evaluate.config import EvalDataset
from llm_core.evaluate.datasets import load_documents


def test_a_text_file_is_one_document_or_its_paragraphs(wikitext):
    (whole,) = load_documents(EvalDataset(name="w", path=str(wikitext)))
    assert "\r" not in whole, "CRLF read as a newline"
    assert whole.startswith("\n\n = Robert Boulter = \n") and len(whole.encode()) == 1307975 - whole.count("\n")
    paragraphs = load_documents(EvalDataset(name="w", path=str(wikitext), split="paragraphs"))
    assert paragraphs[:2] == ["= Robert Boulter =", paragraphs[1]] and paragraphs[1].startswith("Robert Boulter is")
    assert all(p and p == p.strip() for p in paragraphs) and len(paragraphs) > 1000
    assert load_documents(EvalDataset(name="w", path=str(wikitext), split="paragraphs", max_docs=3)) == paragraphs[:3]


def test_json_lines_and_parquet_rows(tmp_path):
    rows = [{"text": "first document"}, {"text": ""}, {"body": "no text field"}, {"text": "second", "n": 1}]
    (tmp_path / "set.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert load_documents(EvalDataset(name="j", path=str(tmp_path / "set.jsonl"))) == ["first document", "second"]
    assert load_documents(EvalDataset(name="j", path=str(tmp_path / "set.jsonl"), text_field="body")) == \
        ["no text field"]
    pq.write_table(pa.table({"content": ["a", None, "b c"], "id": [1, 2, 3]}), tmp_path / "set.parquet")
    assert load_documents(EvalDataset(name="p", path=str(tmp_path / "set.parquet"), text_field="content")) == \
        ["a", "b c"]


@pytest.mark.parametrize("name, content, settings, message", [
    ("empty.txt", b"", {}, "is empty"),
    ("latin1.txt", "Grüße aus Köln".encode("iso-8859-1"), {}, r"is not UTF-8 text \(invalid start byte at byte offset 2\)"),
    ("blank.txt", b"\n \r\n\t\n", {}, "has no text"),
    ("blank.txt", b"\n \r\n\t\n", {"split": "paragraphs"}, "has no text"),
    ("rows.jsonl", b'{"title": "x"}\n{"text": ""}\n', {}, "has no text"),
    ("broken.jsonl", b'{"text": "x"}\n{"text": \n', {}, "line 2 is not JSON"),
    ("numbers.jsonl", b'{"text": 3}\n', {}, "line 1: 'text' is not a string"),
    ("table.parquet", None, {"text_field": "body"}, "has no string column 'body'"),
    ("fake.parquet", b"not parquet", {}, "is not a Parquet file"),
])
def test_a_bad_file_is_a_clear_error_naming_it(tmp_path, name, content, settings, message):
    path = tmp_path / name
    if content is None:
        pq.write_table(pa.table({"text": ["a"]}), path)
    else:
        path.write_bytes(content)
    with pytest.raises(StageError, match=message) as info:
        load_documents(EvalDataset(name="bad", path=str(path), **settings))
    assert str(path) in str(info.value) and "[evaluate] evaluate.datasets[bad]" in str(info.value)
    assert not info.value.retryable


def test_config_checks():
    with pytest.raises(ValidationError, match="repeated: a"):
        EvaluateConfig(datasets=[{"name": "a", "path": "x"}, {"name": "a", "path": "y"}])
    with pytest.raises(ValidationError, match="pattern"):
        EvalDataset(name="has space", path="x")
    with pytest.raises(ValidationError):
        EvaluateConfig(top_p=0)
    config = EvaluateConfig(datasets=[{"name": "w", "path": "x.txt", "stride": 16}])
    assert config.datasets[0].split == "file" and config.continuation.num_docs == 20 and config.top_p == 1.0


def test_the_datasets_contents_enter_the_stage_key(tmp_path):
    path = tmp_path / "set.txt"
    path.write_text("some text\n")
    config = PipelineConfig(evaluate={"datasets": [{"name": "s", "path": str(path)}]})
    inputs = {"tokenizer": "t" * 16, "train": "m" * 16}
    before = STAGE.key(config, inputs)
    assert STAGE.key(config, inputs) == before
    path.write_text("other text\n")
    assert STAGE.key(config, inputs) != before, "a set edited in place is scored again"
    assert STAGE.key(PipelineConfig(), inputs) != before
