"""Metric definitions, in one place, as lm-evaluation-harness, sacrebleu and rouge-score define them.

Language modelling (lm-eval's wikitext task: per-document sums, then ratios of the sums,
its ``weighted_perplexity`` and ``bits_per_byte`` aggregations):

- ``token_perplexity = exp(sum nll / sum tokens)``: depends on the tokenizer;
- ``word_perplexity = exp(sum nll / sum words)``, words as lm-eval counts them,
  ``len(re.split(r"\\s+", doc))``;
- ``byte_perplexity = exp(sum nll / sum bytes)``, bytes of the document's UTF-8 text;
- ``bits_per_byte = sum nll / sum bytes / ln 2``.

The last three divide by a property of the text, not of the tokenization, so models with
different vocabularies compare on them.

Generation (the continuation task): corpus BLEU by sacrebleu's defaults (13a tokenization,
exp smoothing, mixed case) with its signature, which says exactly how the score was made;
ROUGE-1/2/L F1 by Google's rouge-score with the Porter stemmer, averaged over the pairs
(0 to 1, rouge-score's scale; BLEU is 0 to 100, sacrebleu's).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@dataclass(frozen=True)
class DocumentScore:
    nll: float  # summed negative log-likelihood of the document's tokens, nats
    tokens: int
    words: int
    bytes: int


def count_words(text: str) -> int:
    """lm-eval's word count (a leading or trailing space counts an empty word, as there)."""
    return len(re.split(r"\s+", text))


def document_score(text: str, nll: float, tokens: int) -> DocumentScore:
    return DocumentScore(nll, tokens, count_words(text), len(text.encode("utf-8")))


def language_model_metrics(scores: Iterable[DocumentScore]) -> dict[str, float | int]:
    """The four ratios of the sums (see the module docstring), and the sums' sizes."""
    scores = list(scores)
    nll = math.fsum(s.nll for s in scores)
    tokens, words, size = (sum(getattr(s, f) for s in scores) for f in ("tokens", "words", "bytes"))
    if not tokens or not size:
        raise ValueError("no scored tokens")
    return {
        "bits_per_byte": nll / size / math.log(2),
        "byte_perplexity": math.exp(nll / size),
        "word_perplexity": math.exp(nll / words),
        "token_perplexity": math.exp(nll / tokens),
        "docs": len(scores),
        "tokens": tokens,
        "words": words,
        "bytes": size,
    }


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, str]:
    """Corpus BLEU (one reference per hypothesis) and sacrebleu's signature of how it was computed;
    the score is ``sacrebleu.corpus_bleu``'s with its defaults."""
    from sacrebleu.metrics import BLEU

    metric = BLEU()  # what sacrebleu.corpus_bleu builds with its defaults, kept for the signature
    return metric.corpus_score(list(hypotheses), [list(references)]).score, str(metric.get_signature())


def rouge(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 over the (hypothesis, reference) pairs."""
    from rouge_score.rouge_scorer import RougeScorer

    if not hypotheses:
        raise ValueError("no pairs to score")
    scorer = RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        scores = scorer.score(reference, hypothesis)  # rouge-score's order: (target, prediction)
        for kind in ROUGE_TYPES:
            totals[kind] += scores[kind].fmeasure
    return {kind: total / len(hypotheses) for kind, total in totals.items()}
