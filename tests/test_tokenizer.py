import json

import numpy as np
import pyarrow as pa
import pytest
from tokenizers import Tokenizer

from llm_core.config import TokenizerConfig
from llm_core.documents import DOCUMENT_SCHEMA, write_documents
from llm_core.errors import StageError
from llm_core.tokenizer import EOT_TOKEN, TOKENIZER_FILE, TokenShards, build_tokenizer_and_shards
from llm_core.tokenizer.train import SHARDS_DIR, is_validation
from helpers import tokenized_shakespeare


@pytest.fixture(scope="module")
def tokenized(shared_data, tmp_path_factory):
    config = TokenizerConfig(vocab_size=1024, shard_tokens=50_000)
    return tokenized_shakespeare(shared_data, tmp_path_factory.mktemp("tok"), config)


def test_tokenizer_round_trips_text(tokenized):
    out, stats, texts = tokenized
    tokenizer = Tokenizer.from_file(str(out / TOKENIZER_FILE))
    assert tokenizer.get_vocab_size() == stats["vocab_size"] == 1024
    assert tokenizer.token_to_id(EOT_TOKEN) is not None
    sample = texts[3][:2000]
    assert tokenizer.decode(tokenizer.encode(sample).ids) == sample
    assert 2.0 < stats["train_bytes_per_token"] < 5.0


def test_shards_are_packed_split_by_document(tokenized):
    out, stats, texts = tokenized
    meta = json.loads((out / SHARDS_DIR / "meta.json").read_text())
    assert meta["dtype"] == "uint16"
    train, val = TokenShards(out / SHARDS_DIR, "train"), TokenShards(out / SHARDS_DIR, "val")
    assert len(train.shards) > 1, "shard_tokens=50k must split the training tokens across files"
    assert all(len(s) <= 50_000 for s in train.shards)
    assert train.tokens == stats["train_tokens"] and val.tokens == stats["val_tokens"]
    expected_val = sum(is_validation(f"doc{i}", 0.1) for i in range(len(texts)))
    assert stats["val_docs"] == expected_val and stats["train_docs"] == len(texts) - expected_val
    eot = meta["eot_id"]
    assert int(np.sum(np.concatenate(val.shards) == eot)) == stats["val_docs"]
    windows = train.sample_windows(np.random.default_rng(0), 4, 65)
    assert windows.shape == (4, 65) and windows.max() < 1024


def test_single_document_is_a_clear_error(tmp_path):
    rows = [{"id": "only", "url": "http://x", "source": "t", "text": "just one document"}]
    write_documents(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), tmp_path / "docs")
    with pytest.raises(StageError, match=r"\[tokenizer\] need at least 2 documents"):
        build_tokenizer_and_shards(TokenizerConfig(), tmp_path / "docs", tmp_path)


def test_token_byte_lengths_add_up_to_the_text(tokenized):
    from llm_core.tokenizer.train import token_byte_lengths

    out, stats, texts = tokenized
    tokenizer = Tokenizer.from_file(str(out / TOKENIZER_FILE))
    lengths = token_byte_lengths(tokenizer)
    assert lengths[tokenizer.token_to_id(EOT_TOKEN)] == 0
    multilingual = "naïve café — 東京 🙂 " + texts[0][:500]
    ids = tokenizer.encode(multilingual).ids
    assert int(lengths[ids].sum()) == len(multilingual.encode("utf-8"))
    val = TokenShards(out / SHARDS_DIR, "val")
    assert int(lengths[np.concatenate(val.shards).astype(np.int64)].sum()) == val.bytes


def test_stage_logs_its_report(tokenized):
    """The files the STAGE row names exist, and its tables become MLflow metrics named by language."""
    from llm_core.tokenizer import STAGE
    from llm_core.tracking import numeric_metrics

    out, stats, _ = tokenized
    assert STAGE.tables == ("languages", "sampling", "sweep")
    for name in STAGE.artifacts:
        assert (out / name).is_file(), name
    json.dumps(stats)  # stats.json
    metrics = numeric_metrics(stats, STAGE.tables)
    assert metrics["languages.und.bytes_per_token"] == metrics["languages.all.bytes_per_token"] == stats["bytes_per_token"]
    assert metrics["sampling.und.sampled_share"] == 1.0 and metrics["unk_rate"] == 0.0
    assert 0 < stats["vocab_used_share"] <= 1 and stats["encode_engine"] == "local"
    assert "| lang | docs | bytes |" in (out / "report.md").read_text()
