"""The dedupe stage's settings (``dedupe:`` in the pipeline YAML)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from llm_core.section import Section


class DedupeConfig(Section):
    # Which passes run, in this order: same URL, same normalised text, near-duplicate text.
    url: bool = True
    exact: bool = True
    near: bool = True
    # Estimated Jaccard similarity of shingles above which two documents are near-duplicates.
    threshold: float = Field(0.8, gt=0, le=1)
    num_perm: int = Field(128, ge=16, le=1024)
    # Shingles: word n-grams (characters of scripts without spaces count as words) or
    # character n-grams of the normalised text.
    shingle: Literal["word", "char"] = "word"
    shingle_size: int = Field(5, ge=1, le=64)
    # Unicode NFKC before shingling and exact hashing (full-width letters, ligatures...).
    nfkc: bool = False
    seed: int = Field(1, ge=0, lt=2**32)
    # How a shingle becomes 32 bits: fmix64 (vectorised, 7-13x faster than datasketch) or
    # sha1 (datasketch's default: signatures equal datasketch's bit for bit). The two do not compare.
    shingle_hash: Literal["fmix64", "sha1"] = "fmix64"
    # datasketch's permutation scheme: affine32 (its default since 2.0) or legacy (< 2.0).
    scheme: Literal["affine32", "legacy"] = "affine32"
    # LSH banding: both or neither; by default datasketch's optimum for the threshold,
    # weighing false positives and false negatives as below.
    bands: int | None = Field(None, ge=1)
    rows: int | None = Field(None, ge=1)
    false_positive_weight: float = Field(0.5, ge=0, le=1)
    false_negative_weight: float = Field(0.5, ge=0, le=1)
    # Candidates are decided on the exact Jaccard similarity of their shingles (re-shingling
    # both texts of each candidate pair); false: on the estimate from the signatures alone
    # (faster, F1 0.93 instead of 0.96 on benchmarks/dedup.py's corpus).
    verify_exact: bool = True
    # Bands and rows are chosen for this (lower) similarity, so more true pairs become
    # candidates, and with verify_exact the signature pre-check uses it too. None: threshold
    # - 0.1 with verify_exact (the exact Jaccard decides), threshold without.
    candidate_threshold: float | None = Field(None, gt=0, le=1)
    # A bucket of up to this many documents yields all its pairs as candidates; a larger
    # one (boilerplate pages) pairs each member with its smallest, so work stays linear.
    max_bucket_pairs: int = Field(64, ge=2, le=4096)
    # Which document of a duplicate group is kept (ties: earliest fetch, smallest id, input order).
    keep: Literal["longest", "earliest", "smallest_id", "first"] = "longest"
    max_component_rounds: int = Field(64, ge=1)
    # Earlier dedupe outputs (their folders, e.g. data/dedupe/<key>) whose accepted documents
    # this run deduplicates against: a page seen there is rejected here as earlier_*_duplicate.
    # Their index must have been built with the same shingle/signature settings.
    against: list[str] = []

    @model_validator(mode="after")
    def _check(self) -> "DedupeConfig":
        if (self.bands is None) != (self.rows is None):
            raise ValueError("dedupe: set both bands and rows, or neither (derived from threshold)")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"dedupe: bands * rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        if self.candidate_threshold is not None and self.candidate_threshold > self.threshold:
            raise ValueError(f"dedupe: candidate_threshold {self.candidate_threshold} is above threshold {self.threshold}")
        if self.false_positive_weight + self.false_negative_weight == 0:
            raise ValueError("dedupe: false_positive_weight and false_negative_weight cannot both be 0")
        return self
