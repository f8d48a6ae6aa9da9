"""An ensemble averages its members' next-token distributions and is scored like one model."""

import math

import pytest
import torch
from torch.nn import functional as F

from llm_core.evaluate.ensemble import Ensemble
from llm_core.evaluate.rolling import document_loglikelihoods
from llm_core.models import GPT, TransformerConfig


def gpt(seed, vocab=50, block=16):
    torch.manual_seed(seed)
    return GPT(TransformerConfig(vocab_size=vocab, block_size=block, n_layer=1, n_head=2, n_embd=16)).eval()


def test_the_ensemble_is_the_mean_of_its_members_distributions():
    a, b = gpt(1), gpt(2)
    idx = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(0))
    mixed, _ = Ensemble([a, b])(idx)
    expected = (F.softmax(a(idx)[0], -1) + F.softmax(b(idx)[0], -1)) / 2
    assert torch.allclose(mixed.exp(), expected, atol=1e-6)
    assert torch.allclose(mixed.logsumexp(-1), torch.zeros(2, 10), atol=1e-5), "normalised: softmax leaves it as is"


def test_an_ensemble_of_copies_scores_as_one_model_and_a_mixture_never_loses_to_the_mean_member():
    a, b = gpt(1), gpt(2)
    docs = [torch.randint(1, 50, (40,), generator=torch.Generator().manual_seed(s)).tolist() for s in range(3)]

    def nll(model):
        return sum(n for n, _ in document_loglikelihoods(model, docs, prefix_token=0, stride=8))

    assert math.isclose(nll(Ensemble([a, gpt(1)])), nll(a), rel_tol=1e-5)
    assert nll(Ensemble([a, b])) <= (nll(a) + nll(b)) / 2 + 1e-6, "-log of a mean is at most the mean of -logs"


def test_members_must_share_a_vocabulary_and_the_shortest_context_applies():
    with pytest.raises(ValueError, match="vocabularies differ"):
        Ensemble([gpt(1, vocab=50), gpt(2, vocab=60)])
    with pytest.raises(ValueError, match="at least two"):
        Ensemble([gpt(1)])
    assert Ensemble([gpt(1, block=16), gpt(2, block=8)]).config.block_size == 8
