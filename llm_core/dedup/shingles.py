"""Normal form and shingles of a text: what "the same" and "nearly the same" compare.

Exact duplicates hash the normal form; near duplicates compare sets of shingles of it.
The normal form folds what copies of a page differ in without differing in content: case,
punctuation, runs of whitespace and (optionally, NFKC) compatibility forms such as
full-width Latin letters or ligatures. Lone surrogates and control characters are dropped
here, so no text (even one that is not valid UTF-8 once encoded) can fail the stage.

Shingles are word n-grams by default. Scripts written without spaces (Chinese, Japanese,
Thai...) have no words to split on, so each of their characters counts as one token:
a Chinese page then gets character n-grams and a mixed page a mix, with one setting.
``kind="char"`` takes character n-grams of the whole normal form instead.

Shingles are windows over ``units``: the tokens, or the characters of the normal form.
``shingles`` builds the set of their UTF-8 bytes (what datasketch hashes, and the exact
Jaccard ground truth). ``minhash`` hashes the same windows without building them: for
word shingles it finds the tokens of a whole batch with ``token_spans``, one numpy pass
over the code points classified like ``_TOKEN`` does (``char_classes``), since a regex
and a ``str`` per token cost more than all the rest of a signature.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import numpy as np

# Scripts written without spaces, as code point ranges: each character is a token of its own.
_NO_SPACE_RANGES = (
    ("\u0e00", "\u0e7f"),  # Thai
    ("\u0e80", "\u0eff"),  # Lao
    ("\u1000", "\u109f"),  # Myanmar
    ("\u1780", "\u17ff"),  # Khmer
    ("\u3040", "\u30ff"),  # Hiragana, Katakana
    ("\u3400", "\u4dbf"), ("\u4e00", "\u9fff"), ("\uf900", "\ufaff"),  # CJK ideographs
    ("\U00020000", "\U0003134f"),
)
_NO_SPACE_SCRIPTS = "".join(f"{lo}-{hi}" for lo, hi in _NO_SPACE_RANGES)
_TOKEN = re.compile(rf"[{_NO_SPACE_SCRIPTS}]|[^\W_{_NO_SPACE_SCRIPTS}]+", re.UNICODE)
# The same tokens for ASCII text (most of the web), twice as fast: there NFKC changes
# nothing, control characters separate tokens anyway, and ``[^\W_]`` is ``[a-z0-9]`` once
# lower-cased.
_ASCII_TOKEN = re.compile(r"[a-z0-9]+")
# Surrogates (unpaired ones survive in Python str from bad input) and control characters.
_JUNK = re.compile(r"[\ud800-\udfff\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


# What _TOKEN makes of a code point: a separator, a letter or digit (a run of them is one
# token), or a character of a script without spaces (a token by itself).
SEPARATOR, WORD, SINGLE = 0, 1, 2


def _prepared(text: str, nfkc: bool) -> str:
    """The string _TOKEN runs on: junk spaced out, NFKC if asked, lower-cased."""
    text = _JUNK.sub(" ", text)
    if nfkc:
        text = unicodedata.normalize("NFKC", text)
    return text.lower()


def tokens(text: str | None, nfkc: bool = False) -> list[str]:
    """The words of the normal form: lower-cased letter/digit runs, one per character in
    scripts without spaces; punctuation, whitespace and control characters are separators."""
    if not text:
        return []
    if text.isascii():
        return _ASCII_TOKEN.findall(text.lower())
    return _TOKEN.findall(_prepared(text, nfkc))


@lru_cache(maxsize=1)
def char_classes() -> np.ndarray:
    """(0x110000,) uint8: the class of every code point, as _TOKEN sees it (``[^\\W_]`` is
    ``str.isalnum``, which is what ``re`` tests). Built once per process, ~0.2 s."""
    classes = np.fromiter((c.isalnum() for c in map(chr, range(0x110000))), dtype=np.uint8, count=0x110000)
    for lo, hi in _NO_SPACE_RANGES:
        classes[ord(lo) : ord(hi) + 1] = SINGLE
    return classes


def token_spans(texts: list[str | None], nfkc: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The tokens of a batch of texts, without a ``str`` per token: (the code points of the
    lower-cased texts, one after another, uint32; each token's start and end in them;
    tokens per text). The same tokens as ``tokens``: junk is a separator anyway (lone
    surrogates pass through as code points), and a newline between texts keeps tokens
    from running across them."""
    prepared = [(_prepared(t, nfkc) if nfkc else t.lower()) if t else "" for t in texts]
    points = np.frombuffer("\n".join(prepared).encode("utf-32-le", "surrogatepass"), dtype="<u4")
    classes = char_classes()[points]
    word = classes == WORD
    single = classes == SINGLE
    run_start = word & ~np.r_[False, word[:-1]]
    run_end = word & ~np.r_[word[1:], False]
    starts = np.flatnonzero(single | run_start)
    ends = np.flatnonzero(single | run_end) + 1
    text_starts = np.cumsum([0] + [len(t) + 1 for t in prepared])
    counts = np.diff(np.searchsorted(starts, text_starts))
    return points, starts, ends, counts


def normalise(text: str | None, nfkc: bool = False) -> str:
    """The normal form, hashed for exact duplicates: tokens joined by one space."""
    return " ".join(tokens(text, nfkc))


def units(text: str | None, kind: str = "word", nfkc: bool = False) -> list[str] | str:
    """What shingles are windows of: the tokens (``kind="word"``), or the characters of
    the normal form (``kind="char"``, spaces between tokens included)."""
    words = tokens(text, nfkc)
    return " ".join(words) if kind == "char" else words


def shingles(text: str | None, size: int, kind: str = "word", nfkc: bool = False) -> set[bytes]:
    """The set of n-grams (UTF-8 bytes) of the normal form.

    A text shorter than one shingle gives one shingle of all it has, so short documents
    still compare; a text with no tokens at all gives the empty set (it has nothing to be
    near to, and its exact duplicates are found by the hash)."""
    seq = units(text, kind, nfkc)
    if not seq:
        return set()
    if kind == "char":
        if len(seq) <= size:
            return {seq.encode("utf-8")}
        return {seq[i : i + size].encode("utf-8") for i in range(len(seq) - size + 1)}
    if len(seq) <= size:
        return {" ".join(seq).encode("utf-8")}
    return {" ".join(seq[i : i + size]).encode("utf-8") for i in range(len(seq) - size + 1)}
