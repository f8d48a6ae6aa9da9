"""The documents the tokenizer stage reads, streamed from the Parquet parts, never all in memory.

Documents are split into train / validation by a hash of their id, so the split is the same
in every run and a document never straddles the two. One pass over the parts (the
:class:`Census`) counts documents and bytes per split and language; the tokenizer's
training text is then drawn from the training split per language (temperature sampling,
:func:`sampling_rates`), as an iterator the trainer pulls from.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llm_core.errors import StageError
from llm_core.tokenizer.config import SampleConfig

STAGE = "tokenizer"
NO_LANGUAGE = "und"  # BCP 47's "undetermined": documents the language filter did not label
REPEAT_WARNING = 10.0  # a language repeated more than this in the training sample is reported


def parquet_files(docs_dir: Path) -> list[Path]:
    return sorted(Path(docs_dir).glob("*.parquet"))


def is_validation(doc_id: str, val_fraction: float) -> bool:
    bucket = int.from_bytes(hashlib.sha256(doc_id.encode()).digest()[:8], "big") / 2**64
    return bucket < val_fraction


def language(label: str | None) -> str:
    return label or NO_LANGUAGE


@dataclass(frozen=True)
class Splitter:
    """Which split a document is in: its hash, except for the few ids moved across (a
    corpus so small that every document hashed to one side). Small and picklable: encoding
    workers get a copy."""

    val_fraction: float
    moved: dict[str, bool] = field(default_factory=dict)  # id -> is validation

    def is_validation(self, doc_id: str) -> bool:
        moved = self.moved.get(doc_id)
        return is_validation(doc_id, self.val_fraction) if moved is None else moved


@dataclass
class Count:
    docs: int = 0
    bytes: int = 0

    def add(self, size: int, docs: int = 1) -> None:
        self.docs += docs
        self.bytes += size


@dataclass
class Census:
    """Documents and UTF-8 bytes per split and language; documents without text are left out."""

    splitter: Splitter
    train: dict[str, Count]
    val: dict[str, Count]
    empty: int

    def total(self, split: str) -> Count:
        counts = getattr(self, split).values()
        return Count(sum(c.docs for c in counts), sum(c.bytes for c in counts))


def iter_chosen(docs_dir: Path, choose: Callable[[str, str], int], batch_size: int = 1024) -> Iterator[tuple[str, str, int]]:
    """``(language, text, copies)`` of the documents that ``choose(id, language)`` gives copies
    to; the text of the others is never converted to Python (a large corpus, a small sample)."""
    for path in parquet_files(docs_dir):
        part = pq.ParquetFile(path)
        columns = [c for c in ("id", "lang", "text") if c in part.schema_arrow.names]
        for batch in part.iter_batches(batch_size=batch_size, columns=columns):
            labels = batch.column("lang").to_pylist() if "lang" in columns else [None] * batch.num_rows
            langs = [language(label) for label in labels]
            copies = [choose(doc_id, lang) for doc_id, lang in zip(batch.column("id").to_pylist(), langs)]
            rows = [i for i, n in enumerate(copies) if n]
            if rows:
                texts = batch.column("text").take(pa.array(rows, pa.int64())).to_pylist()
                for i, text in zip(rows, texts):
                    if text:
                        yield langs[i], text, copies[i]


def take_census(docs_dir: Path, val_fraction: float) -> Census:
    """Count the corpus per split and language (reads ids, labels and text lengths only), and
    fix a split left empty by moving one document across."""
    counts: dict[bool, dict[str, Count]] = {False: {}, True: {}}
    last: dict[bool, tuple[str, str, int] | None] = {False: None, True: None}
    empty = 0
    for path in parquet_files(docs_dir):
        part = pq.ParquetFile(path)
        columns = [c for c in ("id", "lang", "text") if c in part.schema_arrow.names]
        for batch in part.iter_batches(batch_size=8192, columns=columns):
            sizes = pc.binary_length(batch.column("text")).to_pylist()
            labels = batch.column("lang").to_pylist() if "lang" in columns else [None] * batch.num_rows
            for doc_id, label, size in zip(batch.column("id").to_pylist(), labels, sizes):
                if not size:
                    empty += 1
                    continue
                val = is_validation(doc_id, val_fraction)
                counts[val].setdefault(language(label), Count()).add(size)
                last[val] = (doc_id, language(label), size)
    docs = sum(c.docs for side in counts.values() for c in side.values())
    if docs < 2:
        raise StageError(STAGE, f"need at least 2 documents to make a train/validation split, got {docs} "
                         f"in {docs_dir}" + (f" ({empty} without text)" if empty else ""))
    moved = {}
    for side in (False, True):  # a tiny corpus can hash every document to one side: move one across
        if not counts[not side] and last[side] is not None:
            doc_id, lang, size = last[side]
            counts[side][lang].add(-size, docs=-1)
            counts[not side].setdefault(lang, Count()).add(size)
            moved[doc_id] = not side
    counts = {side: {lang: c for lang, c in sorted(by.items()) if c.docs} for side, by in counts.items()}
    return Census(Splitter(val_fraction, moved), train=counts[False], val=counts[True], empty=empty)


def sampling_rates(train: dict[str, Count], sample: SampleConfig) -> dict[str, float]:
    """How many times, on average, each language's training documents enter the tokenizer's
    training text: language l gets a share ∝ n_l ** alpha of a budget of ``max_bytes``
    (default: the training split's size), n_l being its bytes (XLM-R, mT5)."""
    total = sum(c.bytes for c in train.values())
    weights = {lang: (c.bytes / total) ** sample.alpha for lang, c in train.items()}
    budget = total if sample.max_bytes is None else min(sample.max_bytes, total)
    norm = sum(weights.values())
    return {lang: weights[lang] / norm * budget / train[lang].bytes for lang in train}


def draw(doc_id: str, rate: float, seed: int) -> int:
    """Copies of a document in the sample: ``floor(rate)``, plus one with probability of the
    fraction left, decided by a hash of the id (the same in every run for the same seed)."""
    whole = math.floor(rate)
    u = int.from_bytes(hashlib.blake2b(f"{seed}:{doc_id}".encode(), digest_size=8).digest(), "big") / 2**64
    return whole + (u < rate - whole)


@dataclass
class TrainingText:
    """The tokenizer's training text: training documents, each drawn :func:`draw` times.

    Iterable any number of times (each sweep size trains on the same text); counts what the
    last pass yielded per language (``drawn``)."""

    docs_dir: Path
    splitter: Splitter
    rates: dict[str, float]
    seed: int
    drawn: dict[str, Count] = field(default_factory=dict)

    def __iter__(self) -> Iterator[str]:
        self.drawn = {}
        for lang, text, copies in iter_chosen(self.docs_dir, self.copies):
            self.drawn.setdefault(lang, Count()).add(len(text.encode("utf-8")) * copies, docs=copies)
            for _ in range(copies):
                yield text

    def copies(self, doc_id: str, lang: str) -> int:
        return 0 if self.splitter.is_validation(doc_id) else draw(doc_id, self.rates.get(lang, 0.0), self.seed)


def sampling_table(census: Census, text: TrainingText, sample: SampleConfig) -> tuple[list[dict], list[str]]:
    """Per language: its training documents and bytes, its share of the training split and
    of the tokenizer's sample; and warnings about a sample that may not be what was meant."""
    total = census.total("train").bytes
    drawn_total = sum(c.bytes for c in text.drawn.values()) or 1
    rows = [{"lang": lang, "train_docs": c.docs, "train_bytes": c.bytes, "share": round(c.bytes / total, 4),
             "sampled_bytes": text.drawn.get(lang, Count()).bytes,
             "sampled_share": round(text.drawn.get(lang, Count()).bytes / drawn_total, 4),
             "mean_copies": round(text.rates[lang], 3)} for lang, c in census.train.items()]
    warnings = []
    if sample.alpha < 1 and len(census.train) == 1:
        warnings.append(f"tokenizer.sample.alpha={sample.alpha} samples across languages, but every training "
                        f"document is in one language ({next(iter(census.train))}): the sample is that language")
    if sample.alpha < 1 and NO_LANGUAGE in census.train:
        warnings.append(f"{census.train[NO_LANGUAGE].docs} training documents have no language label; they are "
                        f"sampled as one language '{NO_LANGUAGE}' (run the filter's language rule to label them)")
    for lang, rate in text.rates.items():
        if rate > REPEAT_WARNING:
            warnings.append(f"language {lang}: its {census.train[lang].docs} training documents are repeated "
                            f"{rate:.1f} times on average in the tokenizer's sample; it may overfit them")
    return rows, warnings


def heldout_sample(docs_dir: Path, census: Census, max_bytes: int) -> dict[str, list[str]]:
    """Validation documents per language, up to about ``max_bytes`` each (for the report);
    reading stops once every language has its share."""
    sample: dict[str, list[str]] = {}
    size = {lang: 0 for lang in census.val}

    def wanted(doc_id: str, lang: str) -> int:
        return int(size.get(lang, max_bytes) < max_bytes and census.splitter.is_validation(doc_id))

    for lang, text, _ in iter_chosen(docs_dir, wanted):
        sample.setdefault(lang, []).append(text)
        size[lang] += len(text.encode("utf-8"))
        if all(n >= max_bytes for n in size.values()):
            break
    return dict(sorted(sample.items()))
