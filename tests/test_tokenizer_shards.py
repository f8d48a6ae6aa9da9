"""Encoding into shards: the same bytes whatever the engine and the number of workers, an
index beside them, and read back by the training data loader."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

import llm_core.tokenizer.train as tokenizer_train
from llm_core.config import ModelConfig, TrainConfig
from llm_core.documents import DOCUMENT_SCHEMA
from llm_core.tokenizer import TOKENIZER_FILE, TokenShards, build_tokenizer_and_shards
from llm_core.tokenizer.config import TokenizerConfig
from llm_core.tokenizer.corpus import take_census
from llm_core.tokenizer.encode import encode_corpus, units_of
from llm_core.tokenizer.shards import META_FILE, token_dtype
from llm_core.tokenizer.train import SHARDS_DIR
from llm_core.train.launch import check_before_start

LITERAL_EOT = "A page that quotes <|endoftext|> in its text."


def write_parts(shared_data, docs_dir, n_docs=120, rows_per_group=9):
    """Shakespeare scenes in two Parquet parts of several row groups each (the units of work)."""
    text = (shared_data / "text_tinyshakespeare" / "input.txt").read_text()[:600_000]
    scenes = [s for s in text.split("\n\n") if s.strip()]
    chunk = len(scenes) // n_docs
    texts = ["\n\n".join(scenes[i * chunk:(i + 1) * chunk]) for i in range(n_docs)]
    texts[7] = LITERAL_EOT
    texts[11] = ""  # no text: left out of both splits
    rows = [{"id": f"doc{i}", "url": f"http://x/{i}", "source": "local", "text": t, "lang": "en"}
            for i, t in enumerate(texts)]
    docs_dir.mkdir(parents=True)
    half = n_docs // 2
    for part, chunk_rows in enumerate((rows[:half], rows[half:])):
        table = pa.Table.from_pylist(chunk_rows, schema=DOCUMENT_SCHEMA)
        pq.write_table(table, docs_dir / f"part-{part:05d}.parquet", row_group_size=rows_per_group)
    return texts


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    texts = write_parts(shared_data, root / "docs")
    return root, texts


def build(corpus, name, **settings):
    root, _ = corpus
    out = root / name
    out.mkdir()
    config = TokenizerConfig(vocab_size=800, shard_tokens=20_000, **settings)
    return out, build_tokenizer_and_shards(config, root / "docs", out)


def shard_bytes(out):
    return {p.name: p.read_bytes() for p in sorted((out / SHARDS_DIR).iterdir())}


def test_units_are_row_groups(corpus):
    root, _ = corpus
    units = units_of(root / "docs")
    assert len(units) == 14 and [u.index for u in units] == list(range(14))
    assert [u.row_group for u in units[:7]] == list(range(7))


def test_same_input_and_seed_same_shards(corpus):
    first_out, first = build(corpus, "first")
    second_out, second = build(corpus, "second")
    assert shard_bytes(first_out) == shard_bytes(second_out)
    assert (first_out / TOKENIZER_FILE).read_bytes() == (second_out / TOKENIZER_FILE).read_bytes()
    assert first["train_tokens"] == second["train_tokens"] and first["empty_docs"] == 1


def test_spark_workers_write_the_same_shards(corpus, spark_config, monkeypatch, tmp_path):
    """Two Spark workers (local[2], one task per row group) against this process, alone."""
    local_out, local = build(corpus, "local")
    monkeypatch.setattr(tokenizer_train, "SPARK_MIN_BYTES", 0)
    root, _ = corpus
    out = root / "spark"
    out.mkdir()
    config = TokenizerConfig(vocab_size=800, shard_tokens=20_000)
    spark = build_tokenizer_and_shards(config, root / "docs", out, spark=spark_config)
    assert (local["encode_engine"], spark["encode_engine"]) == ("local", "spark")
    assert shard_bytes(out) == shard_bytes(local_out)
    # And the encoder alone, with another shard size, against a single-threaded run here.
    census = take_census(root / "docs", 0.1)
    runs = {}
    for name, engine in (("one", None), ("two", spark_config)):
        (tmp_path / name).mkdir()
        runs[name] = encode_corpus(out / TOKENIZER_FILE, root / "docs", tmp_path / name, census.splitter, 0,
                                   token_dtype(800), 7_777, engine)
        assert not list(tmp_path.glob(".*-units")), "the staging folder is removed"
    assert runs["one"] == runs["two"]
    one = {p.name: p.read_bytes() for p in sorted((tmp_path / "one").iterdir())}
    two = {p.name: p.read_bytes() for p in sorted((tmp_path / "two").iterdir())}
    assert one == two and len(one) > 4


def test_index_counts_tokens_and_documents_per_shard(corpus):
    out, stats = build(corpus, "index")
    meta = json.loads((out / SHARDS_DIR / META_FILE).read_text())
    tokenizer = Tokenizer.from_file(str(out / TOKENIZER_FILE))
    assert meta["eot_id"] == tokenizer.token_to_id("<|endoftext|>") and meta["dtype"] == "uint16"
    for split in ("train", "val"):
        info = meta["splits"][split]
        assert [s["file"] for s in info["shards"]] == info["files"]
        assert sum(s["tokens"] for s in info["shards"]) == info["tokens"] == stats[f"{split}_tokens"]
        assert sum(s["docs"] for s in info["shards"]) == info["docs"] == stats[f"{split}_docs"]
        for shard in info["shards"]:
            ids = np.fromfile(out / SHARDS_DIR / shard["file"], dtype=np.uint16)
            assert len(ids) == shard["tokens"] <= 20_000
            assert int(np.count_nonzero(ids == meta["eot_id"])) == shard["docs"]
    assert stats["train_docs"] + stats["val_docs"] == 119, "the document without text is left out"


def test_literal_special_token_text_stays_text(corpus):
    out, _ = build(corpus, "literal")
    tokenizer = Tokenizer.from_file(str(out / TOKENIZER_FILE))
    eot = tokenizer.token_to_id("<|endoftext|>")
    ids = np.concatenate([np.fromfile(p, dtype=np.uint16) for p in sorted((out / SHARDS_DIR).glob("*.bin"))])
    documents = ids.tolist()
    text_ids = tokenizer.encode(LITERAL_EOT).ids
    assert eot in text_ids, "outside the shards, the text is the special token (as transformers does)"
    assert int(np.count_nonzero(ids == eot)) == 119, "one end-of-text per document, none from the page's text"
    decoded = tokenizer.decode(documents, skip_special_tokens=False)
    assert LITERAL_EOT + "<|endoftext|>" in decoded


def test_training_loader_reads_the_shards(corpus):
    out, stats = build(corpus, "loader", kind="unigram", character_coverage=0.999)
    shards = out / SHARDS_DIR
    train = TokenShards(shards, "train")
    assert train.vocab_size == 800 and train.tokens == stats["train_tokens"] and len(train.shards) > 2
    windows = train.sample_windows(np.random.default_rng(0), 8, 129)
    assert windows.shape == (8, 129) and windows.max() < 800
    check_before_start(TrainConfig(model=ModelConfig(block_size=128)), shards)  # a window fits: no error
    val = TokenShards(shards, "val")
    assert val.sequential_windows(65), "the evaluation cuts the validation shards into windows"
