"""MinHash signatures and LSH bands for a whole batch of documents at once, with numpy.

The permutations and the estimator are datasketch's: each 32-bit shingle hash is permuted
by datasketch's scheme, with the permutation parameters drawn exactly as datasketch draws
them from ``np.random.RandomState(seed)``:

- ``affine32`` (datasketch >= 2.0's default): ``fmix32(h) * a + b mod 2**32``, ``a`` odd;
- ``legacy`` (datasketch < 2.0): ``(a * h + b) mod (2**61 - 1)``, truncated to 32 bits.

and the similarity of two signatures is the fraction of equal slots. Only the function
that hashes a shingle to 32 bits (``shingle_hash``) is a choice:

- ``sha1`` (datasketch's ``sha1_hash32`` of the shingle's UTF-8 bytes): signatures equal
  datasketch's default bit for bit (``tests/test_dedupe.py``), at the price of building
  every shingle as bytes in Python;
- ``fmix64`` (the default; 7-13x faster per core than datasketch from the same texts,
  5-10x faster than its hashing alone, on real pages): no shingle, token ``str`` or
  regex match is built. The code points of a batch are mixed by MurmurHash3's 64-bit
  finalizer (``fmix64``, keyed by the position in the token); a token's hash is a sum of
  them (a difference of prefix sums, finalized again); a shingle's is the polynomial mod
  ``2**64`` of its ``size`` token hashes (character values for character shingles),
  finalized, low 32 bits. The windows are those of ``shingles.shingles`` (as a multiset:
  the minimum is the same), so the signatures equal datasketch's
  ``MinHash(hashfunc=shingle_hash32)`` fed the shingle sets, bit for bit
  (``tests/test_minhash.py``): the same estimator with another hash function. Signatures
  of the two hashes do not compare with each other.

datasketch permutes one document at a time; here the shingle hashes of a whole Arrow
batch are permuted as one matrix and reduced per document with ``minimum.reduceat``, in
chunks so a 10 MB document does not need gigabytes.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from llm_core.dedup.shingles import shingles, token_spans, units

MERSENNE = np.uint64((1 << 61) - 1)
MAX32 = np.uint32(0xFFFFFFFF)
SCHEMES = ("affine32", "legacy")
SHINGLE_HASHES = ("fmix64", "sha1")
# Shingle hashes permuted at once: CHUNK x num_perm x 4 bytes (4 MB at 128 permutations,
# twice that with the legacy scheme's 64-bit products). Small enough to stay in cache
# between the permutation and the minimum: 1.5-2x faster than 2**16 here.
CHUNK = 1 << 13
# Odd multiplier of the polynomial over a window (2**64 / golden ratio): odd, so no
# position's contribution can vanish mod 2**64.
POLY = np.uint64(0x9E3779B97F4A7C15)
# Added to (position << 21 | code point) before mixing: fmix64 is a bijection with
# fmix64(0) = 0, so every character's value is nonzero and distinct from the others.
CHAR_OFFSET = np.uint64(0x632BE59BD9B4E019)
# Characters whose token hashes are computed at once: ~8 arrays of 8 bytes each, ~64 MB.
TOKEN_CHUNK = 1 << 20


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int, scheme: str = "affine32") -> tuple[np.ndarray, np.ndarray]:
    """datasketch's ``MinHash._init_permutations``: the same draws in the same order."""
    gen = np.random.RandomState(seed)
    if scheme == "legacy":
        ab = np.array([(gen.randint(1, MERSENNE, dtype=np.uint64), gen.randint(0, MERSENNE, dtype=np.uint64))
                       for _ in range(num_perm)], dtype=np.uint64).T
        return ab[0], ab[1]
    if scheme != "affine32":
        raise ValueError(f"unknown MinHash scheme {scheme!r}; expected one of {SCHEMES}")
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def hash32(shingles: list[bytes]) -> np.ndarray:
    """datasketch's ``sha1_hash32`` of each shingle: the first 4 digest bytes, little-endian.
    (Whole 20-byte digests joined and strided: faster than slicing each in Python.)"""
    sha1 = hashlib.sha1
    digests = b"".join([sha1(s).digest() for s in shingles])
    return np.frombuffer(digests, dtype="<u4")[::5].copy()


def _fmix32(h: np.ndarray) -> np.ndarray:
    """The MurmurHash3 finalizer datasketch applies before an affine32 permutation."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _permute(h: np.ndarray, a: np.ndarray, b: np.ndarray, scheme: str) -> np.ndarray:
    """(n,) shingle hashes -> (num_perm, n) permuted values, uint32. Permutations on the
    first axis: the per-document minimum then runs along contiguous rows (3-5x faster)."""
    with np.errstate(over="ignore"):
        if scheme == "legacy":
            out = a[:, None] * h.astype(np.uint64) + b[:, None]
            return ((out % MERSENNE) & np.uint64(MAX32)).astype(np.uint32)
        out = np.empty((len(a), len(h)), dtype=np.uint32)
        np.multiply(a[:, None], _fmix32(h), out=out)
        return np.add(out, b[:, None], out=out)


def _fmix64(h: np.ndarray) -> np.ndarray:
    """The MurmurHash3 64-bit finalizer, in place: every input bit reaches every output bit,
    so the low 32 bits kept from a polynomial depend on all of it."""
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


def _char_values(points: np.ndarray, within: np.ndarray | None = None) -> np.ndarray:
    """A 64-bit value per code point (keyed by its position within its token, when given):
    distinct (position, code point) pairs get distinct values, none of them 0."""
    x = points.astype(np.uint64)
    if within is not None:
        x |= within.astype(np.uint64) << np.uint64(21)  # code points have 21 bits
    x += CHAR_OFFSET
    return _fmix64(x)


def _token_hashes(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """64-bit hash of each token ``points[start:end]``: the sum of its characters' values,
    finalized. Sums are differences of one prefix sum, so a token of any length costs one
    pass; TOKEN_CHUNK characters at a time, so a 10 MB page does not need gigabytes."""
    out = np.empty(len(starts), dtype=np.uint64)
    first = 0
    while first < len(starts):
        last = max(int(np.searchsorted(starts, starts[first] + TOKEN_CHUNK)), first + 1)
        base = starts[first]
        s, e = starts[first:last] - base, ends[first:last] - base
        n = int(e[-1])
        within = np.arange(n) - np.repeat(s, np.diff(np.r_[s, n]))  # position in its token
        sums = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum(_char_values(points[base : base + n], within), out=sums[1:])
        out[first:last] = _fmix64(sums[e] - sums[s])
        first = last
    return out


def _word_elements(texts: list[str | None], nfkc: bool) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every token of the batch, tokens per text)."""
    points, starts, ends, counts = token_spans(texts, nfkc)
    return _token_hashes(points, starts, ends), counts


def _char_elements(texts: list[str | None], nfkc: bool) -> tuple[np.ndarray, np.ndarray]:
    """(value of every character of the batch's normal forms, characters per text)."""
    flats = [units(t, "char", nfkc) for t in texts]
    points = np.frombuffer("".join(flats).encode("utf-32-le"), dtype="<u4")
    return _char_values(points), np.fromiter(map(len, flats), dtype=np.int64, count=len(flats))


def _window_hashes(x: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """32-bit hash of each window ``x[start : start + length]``: Horner's polynomial in
    ``POLY`` mod 2**64, finalized. A window shorter than the others (a document shorter
    than one shingle) stops early."""
    h = np.zeros(len(starts), dtype=np.uint64)
    last = len(x) - 1
    for j in range(int(lengths.max(initial=0))):
        step = h * POLY + x[np.minimum(starts + j, last)]
        h = np.where(j < lengths, step, h)
    return _fmix64(h).astype(np.uint32)


def shingle_hash32(shingle: bytes, kind: str = "word") -> int:
    """The ``fmix64`` hash of one shingle as ``shingles.shingles`` builds it, by the same
    code as the batch path. ``MinHash(hashfunc=partial(shingle_hash32, kind=...))`` gives
    datasketch the signatures computed here, so an index built with datasketch can be
    queried with them."""
    text = shingle.decode("utf-8")
    points = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    if kind == "char":
        x = _char_values(points)
    else:
        lengths = np.array([len(w) for w in text.split(" ")])
        starts = np.cumsum(lengths + 1) - lengths - 1
        x = _token_hashes(points, starts, starts + lengths)
    return int(_window_hashes(x, np.zeros(1, dtype=np.int64), np.array([len(x)]))[0])


def _min_into(out: np.ndarray, hashes: np.ndarray, docs: np.ndarray, a: np.ndarray, b: np.ndarray,
              scheme: str) -> None:
    """Permute one chunk of shingle hashes and lower ``out[doc]`` to each document's
    minimum. ``docs`` (the document of each hash) is ascending within the chunk."""
    starts = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])  # where a document's run starts
    mins = np.minimum.reduceat(_permute(hashes, a, b, scheme), starts, axis=1).T
    seg_docs = docs[starts]
    out[seg_docs] = np.minimum(out[seg_docs], mins)


def signatures(shingle_sets: list[set[bytes] | list[bytes]], num_perm: int = 128, seed: int = 1,
               scheme: str = "affine32") -> np.ndarray:
    """(documents, num_perm) uint32 signatures of shingle sets, hashed with SHA-1: equal to
    datasketch's. A document without shingles keeps the empty value (all ``2**32 - 1``),
    as a datasketch MinHash that was never updated."""
    a, b = permutations(num_perm, seed, scheme)
    out = np.full((len(shingle_sets), num_perm), MAX32, dtype=np.uint32)
    counts = np.fromiter((len(s) for s in shingle_sets), dtype=np.int64, count=len(shingle_sets))
    if counts.sum() == 0:
        return out
    hashes = hash32([s for shingles in shingle_sets for s in shingles])
    owner = np.repeat(np.arange(len(shingle_sets)), counts)  # document of each shingle hash
    for start in range(0, len(hashes), CHUNK):
        _min_into(out, hashes[start : start + CHUNK], owner[start : start + CHUNK], a, b, scheme)
    return out


def window_signatures(x: np.ndarray, counts: np.ndarray, size: int, num_perm: int = 128, seed: int = 1,
                      scheme: str = "affine32") -> np.ndarray:
    """(documents, num_perm) uint32 signatures from the units of all documents, one after
    another (``x``: 64-bit token hashes or character values; ``counts``: units per
    document). Every window of ``size`` units (one window of all units when fewer) is
    hashed in place, chunk by chunk, so no shingle is ever built."""
    a, b = permutations(num_perm, seed, scheme)
    out = np.full((len(counts), num_perm), MAX32, dtype=np.uint32)
    windows = np.where(counts > 0, np.maximum(counts - size + 1, 1), 0)
    window_end = np.cumsum(windows)
    first_unit = np.cumsum(counts) - counts
    total = int(windows.sum())
    for start in range(0, total, CHUNK):
        index = np.arange(start, min(start + CHUNK, total))
        docs = np.searchsorted(window_end, index, side="right")  # the document of each window
        unit = first_unit[docs] + index - (window_end[docs] - windows[docs])
        hashes = _window_hashes(x, unit, np.minimum(counts[docs], size))
        _min_into(out, hashes, docs, a, b, scheme)
    return out


def text_signatures(texts: list[str | None], *, num_perm: int = 128, seed: int = 1, scheme: str = "affine32",
                    shingle: str = "word", shingle_size: int = 5, nfkc: bool = False,
                    shingle_hash: str = "fmix64") -> tuple[np.ndarray, np.ndarray]:
    """Texts -> ((documents, num_perm) uint32 signatures, (documents,) bool: has shingles).
    What ``near.sign`` runs on each Arrow batch."""
    if shingle_hash == "sha1":
        sets = [shingles(t, shingle_size, shingle, nfkc) for t in texts]
        has = np.fromiter((bool(s) for s in sets), dtype=bool, count=len(sets))
        return signatures(sets, num_perm, seed, scheme), has
    if shingle_hash != "fmix64":
        raise ValueError(f"unknown shingle hash {shingle_hash!r}; expected one of {SHINGLE_HASHES}")
    x, counts = (_char_elements if shingle == "char" else _word_elements)(list(texts), nfkc)
    return window_signatures(x, counts, shingle_size, num_perm, seed, scheme), counts > 0


def jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """datasketch's estimator, row by row: the fraction of equal slots."""
    return (np.asarray(sig_a) == np.asarray(sig_b)).mean(axis=-1)


def optimal_bands(threshold: float, num_perm: int, false_positive_weight: float = 0.5,
                  false_negative_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) minimising the weighted false positive + false negative probability:
    datasketch's ``MinHashLSH`` choice, from datasketch itself."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, num_perm, false_positive_weight, false_negative_weight)


def band_hashes(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(documents, bands) int64 keys, one per band of ``rows`` slots. Two documents share
    a key when the band is equal (and, rarely, by a 64-bit collision, which verification
    then rejects). The band index is mixed in, so keys of different bands differ."""
    n = sigs.shape[0]
    x = sigs[:, : bands * rows].reshape(n, bands, rows).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = np.full((n, bands), 0x9E3779B97F4A7C15, dtype=np.uint64) ^ np.arange(bands, dtype=np.uint64)
        for j in range(rows):  # FNV-like polynomial over the band, then a 64-bit finalizer
            h = (h ^ x[:, :, j]) * np.uint64(0x100000001B3)
            h = h ^ (h >> np.uint64(29))
        h = h ^ (h >> np.uint64(33))
        h = h * np.uint64(0xFF51AFD7ED558CCD)
        h = h ^ (h >> np.uint64(33))
    return h.view(np.int64)
