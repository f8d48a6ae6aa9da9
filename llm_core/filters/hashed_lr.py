"""Spark ML's ``RegexTokenizer -> HashingTF -> LogisticRegression``, scored in plain Python.

The quality classifier trains with Spark MLlib (as GPT-3 did) but scores inside the rule
pass, on Arrow batches, without a second Spark job: this module reproduces Spark's
featurisation exactly (the scores equal ``PipelineModel.transform``'s probabilities to
~1e-14; ``QualityClassifier.fit`` checks it on held-out documents every time).

- Tokens: Java's ``toLowerCase`` (Python's ``lower`` agrees outside Turkish/Lithuanian default
  locales), split on Java's ``\\s`` (ASCII whitespace only), empty tokens dropped.
- Term index: ``FeatureHasher.murmur3Hash`` (used by ``HashingTF`` since Spark 3.0):
  MurmurHash3 x86_32 of the UTF-8 bytes, seed 42, non-negative modulo ``num_features``;
  ``mmh3`` computes the same hash in C.
- Score: sigmoid of the intercept plus the coefficients of the term counts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SPARK_HASH_SEED = 42  # org.apache.spark.mllib.feature.HashingTF.seed, used by ml.feature.HashingTF
_JAVA_WHITESPACE = re.compile(r"[ \t\n\x0b\f\r]+")  # Java's \s without UNICODE_CHARACTER_CLASS
_TOKEN_CACHE_LIMIT = 2_000_000  # token -> weight entries kept per worker before starting over


def spark_tokens(text: str) -> list[str]:
    """``RegexTokenizer(pattern="\\s+", toLowercase=True, minTokenLength=1)``."""
    return [t for t in _JAVA_WHITESPACE.split(text.lower()) if t]


def spark_term_index(token: str, num_features: int) -> int:
    """``HashingTF``'s index of a term (Java encodes a lone surrogate as ``?``, as ``replace`` does)."""
    import mmh3

    return mmh3.hash(token.encode("utf-8", "replace"), SPARK_HASH_SEED, signed=True) % num_features


@dataclass
class HashedLogisticRegression:
    """The fitted coefficients, sparse (small enough to ship to every executor), and a
    per-process cache of token weights that is never pickled."""

    num_features: int
    intercept: float
    indices: np.ndarray  # the non-zero coefficients
    values: np.ndarray
    _weights: dict[str, float] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_pipeline_model(cls, model: Any) -> "HashedLogisticRegression":
        """From a fitted ``PipelineModel(RegexTokenizer, HashingTF, LogisticRegressionModel)``."""
        hashing, lr = model.stages[1], model.stages[2]
        dense = lr.coefficients.toArray()
        indices = np.flatnonzero(dense).astype(np.int32)
        return cls(int(hashing.getNumFeatures()), float(lr.intercept), indices, dense[indices].astype(np.float64))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_weights": {}}

    def _token_weight(self, token: str) -> float:
        index = spark_term_index(token, self.num_features)
        position = int(np.searchsorted(self.indices, index))  # indices are sorted (flatnonzero)
        hit = position < self.indices.size and self.indices[position] == index
        return float(self.values[position]) if hit else 0.0

    def scores(self, texts: list[str]) -> list[float]:
        """P(positive) of each text, as Spark's ``transform`` computes it."""
        cache = self._weights
        if len(cache) > _TOKEN_CACHE_LIMIT:
            cache.clear()
        out = []
        for text in texts:
            tokens = spark_tokens(text)
            for token in set(tokens).difference(cache):
                cache[token] = self._token_weight(token)
            margin = self.intercept + sum(map(cache.__getitem__, tokens))
            out.append(1.0 / (1.0 + math.exp(-margin)) if margin > -700 else 0.0)
        return out
