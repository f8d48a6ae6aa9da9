"""Tokenizer: the stage's encoding and training against plain ``tokenizers``, and how three
subword families fit English and Chinese.

On real text from the shared folder (``LLMPIPE_SHARED_DATA``, default ``../shared/data``),
written as Parquet documents (64 per row group) in a temporary directory:
English = Tiny Shakespeare (by scene groups), WikiText-2 raw test (by article), Botchan (by
chapter), CCNet head documents; Chinese = Song ci and Tang poems, 20 poems a document.

1. Training (byte-level BPE, ``--train-vocab`` tokens): our ``train_tokenizer`` fed by the
   stage's census and streamed training text (Parquet read, split by id hash), against plain
   ``tokenizers`` (the same model, pre-tokenizer and trainer) on the same documents held in
   a Python list. ``train_ratio_vs_plain`` = plain seconds / ours (1 = no overhead).
2. Encoding: the stage's encoder (``encode_corpus``: Parquet row groups as Spark tasks ->
   shards on disk) with Spark ``local[1]`` and ``local[2]`` (session and Python workers
   started before the clock), against plain ``Tokenizer.encode_batch`` over the same texts
   in memory on one thread (``TOKENIZERS_PARALLELISM=false``), in the same run, rounds
   interleaved, best kept. ``encode_ratio_vs_plain`` = our tokens/s on one worker over
   plain's on one core; ``encode_ratio_vs_plain_per_core_2w`` the same per core with two.
3. Families: byte_bpe, wordpiece and unigram at ``--sizes`` trained on the same sample
   (``--sample-bytes``, natural language proportions) and measured on held-out documents:
   bytes per token and tokens per word per language (``llm_core.tokenizer.report``).

Last line: one JSON object (encode_ratio_vs_plain, train_ratio_vs_plain, encode_tokens_per_s,
bytes_per_token_en, bytes_per_token_zh (byte_bpe at the middle size), and the detail).
Usage: .venv/bin/python benchmarks/tokenizer.py [--repeat K] [--rounds R] [--sizes 8192 16384 32768]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from support import log, rounded, shared_data  # noqa: E402

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

from llm_core.documents import DOCUMENT_SCHEMA  # noqa: E402
from llm_core.errors import StageError  # noqa: E402
from llm_core.spark import SparkConfig, get_spark  # noqa: E402
from llm_core.tokenizer.config import SampleConfig, TokenizerConfig  # noqa: E402
from llm_core.tokenizer.corpus import TrainingText, heldout_sample, sampling_rates, take_census  # noqa: E402
from llm_core.tokenizer.encode import encode_corpus  # noqa: E402
from llm_core.tokenizer.report import measure  # noqa: E402
from llm_core.tokenizer.shards import token_dtype  # noqa: E402
from llm_core.tokenizer.train import train_tokenizer  # noqa: E402


# --- corpus ---------------------------------------------------------------------------------------
def english(data: Path) -> list[str]:
    shakespeare = [s for s in (data / "text_tinyshakespeare" / "input.txt").read_text().split("\n\n") if s.strip()]
    docs = ["\n\n".join(shakespeare[i:i + 40]) for i in range(0, len(shakespeare), 40)]
    wiki = (data / "text_wikitext2_raw_test" / "wikitext-test.txt").read_text()
    docs += [a for a in re.split(r"\n \= [^=].* \= \n", wiki) if a.strip()]
    botchan = (data / "text_sentencepiece_novels" / "botchan.txt").read_text(encoding="utf-8-sig")
    docs += [c for c in re.split(r"\n(?=CHAPTER )", botchan) if c.strip()]
    for path in sorted((data / "text_ccnet_en_head_dolma").glob("*.jsonl")):
        docs += [t for line in path.read_text().splitlines() if line.strip() and (t := json.loads(line).get("text"))]
    return docs


def chinese(data: Path) -> list[str]:
    root = data / "text_zh_chinese_poetry"
    poems = []
    for path in sorted((root / "宋词").glob("ci.song.*.json"))[:8] + sorted((root / "全唐诗").glob("*.json"))[:3]:
        poems += ["\n".join(p.get("paragraphs", [])) for p in json.loads(path.read_text())]
    return ["\n\n".join(poems[i:i + 20]) for i in range(0, len(poems), 20)]


def write_corpus(docs: list[tuple[str, str]], out: Path, repeat: int = 1) -> Path:
    """Documents (lang, text) as one Parquet part, 64 documents a row group; ``repeat`` copies under new ids."""
    rows = [{"id": f"{lang}{i}-r{r}", "url": f"http://bench/{lang}/{i}/{r}", "source": "local", "text": text,
             "lang": lang} for r in range(repeat) for i, (lang, text) in enumerate(docs)]
    out.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), out / "part-00000.parquet", row_group_size=64)
    return out


# --- 1. training ----------------------------------------------------------------------------------
def plain_byte_bpe(texts: list[str], vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def bench_training(docs_dir: Path, vocab_size: int, rounds: int, out: Path) -> dict:
    config = TokenizerConfig(vocab_size=vocab_size)
    census = take_census(docs_dir, config.val_fraction)
    texts = list(TrainingText(docs_dir, census.splitter, sampling_rates(census.train, config.sample), 0))
    ours_s, plain_s = [], []

    def run_ours() -> Tokenizer:
        started = time.perf_counter()
        census = take_census(docs_dir, config.val_fraction)
        text = TrainingText(docs_dir, census.splitter, sampling_rates(census.train, config.sample), 0)
        tokenizer = train_tokenizer(config, text)
        ours_s.append(time.perf_counter() - started)
        return tokenizer

    def run_plain() -> Tokenizer:
        started = time.perf_counter()
        tokenizer = plain_byte_bpe(texts, vocab_size)
        plain_s.append(time.perf_counter() - started)
        return tokenizer

    for round_ in range(rounds):  # interleaved, the order alternating: the machine's load hits both alike
        if round_ % 2:
            plain, ours = run_plain(), run_ours()
        else:
            ours, plain = run_ours(), run_plain()
        log(f"training: ours {ours_s[-1]:.1f}s, plain {plain_s[-1]:.1f}s")
    ours.save(str(out))
    return {"vocab_size": vocab_size, "train_docs": len(texts), "train_bytes": sum(len(t.encode()) for t in texts),
            "ours_s": min(ours_s), "plain_s": min(plain_s), "same_vocab": ours.get_vocab() == plain.get_vocab(),
            "train_ratio_vs_plain": min(plain_s) / min(ours_s)}


# --- 2. encoding ----------------------------------------------------------------------------------
def plain_encode(tokenizer: Tokenizer, texts: list[str], fast: bool = False) -> tuple[float, int]:
    encode = tokenizer.encode_batch_fast if fast else tokenizer.encode_batch
    started, tokens = time.perf_counter(), 0
    for i in range(0, len(texts), 1024):
        tokens += sum(len(e.ids) for e in encode(texts[i:i + 1024], add_special_tokens=False))
    return time.perf_counter() - started, tokens


def threaded(run):
    """``run()`` with tokenizers' thread pool on (every core), then off again."""
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        return run()
    finally:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"


def ours_encode(tokenizer_file: Path, docs_dir: Path, census, tmp: Path, workers: int) -> tuple[float, int]:
    spark = SparkConfig(master=f"local[{workers}]", conf={"spark.ui.enabled": "false"})
    shard_dir = Path(tempfile.mkdtemp(dir=tmp))
    started = time.perf_counter()
    splits = encode_corpus(tokenizer_file, docs_dir, shard_dir, census.splitter, 0, token_dtype(65536), 50_000_000, spark)
    elapsed = time.perf_counter() - started
    for f in shard_dir.iterdir():
        f.unlink()
    return elapsed, sum(s["tokens"] - s["docs"] for s in splits.values())  # text tokens, as plain counts


def bench_encoding(tokenizer_file: Path, docs_dir: Path, warm_dir: Path, tmp: Path, rounds: int) -> dict:
    census = take_census(docs_dir, 0.1)
    texts = [t for t in pq.read_table(docs_dir, columns=["text"]).column("text").to_pylist() if t]
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    results: dict = {"docs": len(texts), "bytes": sum(len(t.encode()) for t in texts)}
    best: dict[str, tuple[float, int]] = {}

    def keep(name: str, run: tuple[float, int]) -> None:
        if name not in best or run[0] < best[name][0]:
            best[name] = run
        log(f"encoding: {name} {run[1]:,} tokens in {run[0]:.1f}s ({run[1] / run[0]:,.0f} tokens/s)")

    for workers in (1, 2):
        get_spark(SparkConfig(master=f"local[{workers}]", conf={"spark.ui.enabled": "false"}))
        ours_encode(tokenizer_file, warm_dir, take_census(warm_dir, 0.1), tmp, workers)  # Python workers up, untimed
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        for round_ in range(rounds):  # interleaved, the order alternating
            runs = [("plain_1core", lambda: plain_encode(tokenizer, texts)),
                    ("plain_fast_1core", lambda: plain_encode(tokenizer, texts, fast=True)),
                    (f"ours_{workers}w", lambda: ours_encode(tokenizer_file, docs_dir, census, tmp, workers))]
            if workers == 2:  # the control: how much a second core gives tokenizers' own threads right now
                runs.append(("plain_threads_2cores", lambda: threaded(lambda: plain_encode(tokenizer, texts))))
            for name, run in (runs if round_ % 2 == 0 else runs[::-1]):
                keep(name, run())
        get_spark(SparkConfig(master=f"local[{workers}]")).stop()
    rate = {name: tokens / seconds for name, (seconds, tokens) in best.items()}
    assert best["ours_1w"][1] == best["plain_1core"][1], "ours and plain must encode the same tokens"
    results.update({f"{name}_tokens_per_s": value for name, value in rate.items()})
    results.update({
        "tokens": best["plain_1core"][1],
        "encode_ratio_vs_plain": rate["ours_1w"] / rate["plain_1core"],
        "encode_ratio_vs_plain_per_core_2w": rate["ours_2w"] / 2 / rate["plain_1core"],
        "encode_ratio_vs_plain_fast": rate["ours_1w"] / rate["plain_fast_1core"],
        "encode_scaling_2w_over_1w": rate["ours_2w"] / rate["ours_1w"],
        "plain_threads_scaling_2cores": rate["plain_threads_2cores"] / rate["plain_1core"],
    })
    return results


# --- 3. families ----------------------------------------------------------------------------------
def bench_families(docs_dir: Path, sizes: list[int], sample_bytes: int) -> dict:
    census = take_census(docs_dir, 0.1)
    heldout = heldout_sample(docs_dir, census, 1_000_000)
    table: dict = {}
    for kind in ("byte_bpe", "wordpiece", "unigram"):
        for size in sizes:
            config = TokenizerConfig(kind=kind, vocab_size=size, sample=SampleConfig(max_bytes=sample_bytes))
            text = TrainingText(docs_dir, census.splitter, sampling_rates(census.train, config.sample), 0)
            started = time.perf_counter()
            try:
                tokenizer = train_tokenizer(config, text)
            except StageError as error:  # a vocabulary too small for the alphabet, say: reported, not hidden
                table[f"{kind}-{size}"] = {"error": str(error)}
                log(f"families: {kind}-{size}: {error}")
                continue
            train_s = time.perf_counter() - started
            rows = {r["lang"]: r for r in measure(tokenizer, heldout)}
            table[f"{kind}-{size}"] = {"train_s": train_s, **{
                lang: {k: rows[lang][k] for k in ("bytes_per_token", "tokens_per_word", "unk_rate", "vocab_used_share")}
                for lang in ("en", "zh")}}
            log(f"families: {kind}-{size} in {train_s:.1f}s: "
                + ", ".join(f"{lang} {rows[lang]['bytes_per_token']} B/token {rows[lang]['tokens_per_word']} tokens/word"
                            for lang in ("en", "zh")))
    return {"heldout": {lang: {"docs": len(t), "bytes": sum(len(x.encode()) for x in t)} for lang, t in heldout.items()},
            "sample_bytes": sample_bytes, "sizes": sizes, "table": table}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=2, help="copies of the corpus encoded (new ids)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, interleaved, best kept")
    parser.add_argument("--train-vocab", type=int, default=8192)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8192, 16384, 32768])
    parser.add_argument("--sample-bytes", type=int, default=2_000_000, help="training text per family and size")
    args = parser.parse_args()
    data = shared_data()
    docs = [("en", t) for t in english(data)] + [("zh", t) for t in chinese(data)]
    figures: dict = {"benchmark": "tokenizer"}
    with tempfile.TemporaryDirectory(prefix="llmpipe-bench-tokenizer-") as tmp_name:
        tmp = Path(tmp_name)
        corpus = write_corpus(docs, tmp / "corpus")
        log(f"corpus: {sum(l == 'en' for l, _ in docs)} English and {sum(l == 'zh' for l, _ in docs)} Chinese "
            f"documents, {sum(len(t.encode()) for _, t in docs):,} bytes")
        training = bench_training(corpus, args.train_vocab, args.rounds, tmp / "tokenizer.json")
        encoding = bench_encoding(tmp / "tokenizer.json", write_corpus(docs, tmp / "encode", args.repeat),
                                  write_corpus(docs[:128], tmp / "warm"), tmp, args.rounds)
        families = bench_families(corpus, args.sizes, args.sample_bytes)
    middle = families["table"].get(f"byte_bpe-{args.sizes[len(args.sizes) // 2]}", {})
    figures.update({
        "encode_ratio_vs_plain": encoding["encode_ratio_vs_plain"],
        "encode_ratio_vs_plain_per_core_2w": encoding["encode_ratio_vs_plain_per_core_2w"],
        "encode_scaling_2w_over_1w": encoding["encode_scaling_2w_over_1w"],
        "train_ratio_vs_plain": training["train_ratio_vs_plain"],
        "encode_tokens_per_s": encoding["ours_2w_tokens_per_s"],
        "bytes_per_token_en": middle.get("en", {}).get("bytes_per_token"),
        "bytes_per_token_zh": middle.get("zh", {}).get("bytes_per_token"),
        "tokens_per_word_en": middle.get("en", {}).get("tokens_per_word"),
        "tokens_per_word_zh": middle.get("zh", {}).get("tokens_per_word"),
        "training": training, "encoding": {**encoding, "repeat": args.repeat, "rounds": args.rounds},
        "families": families,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    })
    print(json.dumps(rounded(figures)))



if __name__ == "__main__":
    main()
