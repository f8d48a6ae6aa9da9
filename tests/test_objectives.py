"""Each family's training objective on real text: BERT's masking statistics and next-sentence
labels, T5's sentinels consistent between input and target, and the special tokens they need."""

import numpy as np
import pytest
import torch

from llm_core.tokenizer.shards import TokenShards
from llm_core.tokenizer.train import SHARDS_DIR
from llm_core.train.objectives import (IGNORE, CausalLM, MaskedLM, MissingSpecialTokens, SpanCorruption,
                                       added_token_ids, objective_for)


@pytest.fixture(scope="module")
def tokenizers(tokenized):
    """Shakespeare through the tokenizer stage as WordPiece, Unigram (3 sentinels: short of
    enough for T5 at 128 tokens, see below), Unigram with 20 sentinels and byte-level BPE."""
    settings = {"wordpiece": {"kind": "wordpiece"}, "unigram_few": {"kind": "unigram", "sentinel_tokens": 3},
                "unigram": {"kind": "unigram", "sentinel_tokens": 20}, "byte_bpe": {}}
    return {name: tokenized(vocab_size=600, **extra) / SHARDS_DIR for name, extra in settings.items()}


def test_masked_lm_statistics(tokenizers):
    shards = tokenizers["wordpiece"]
    objective = objective_for("bert", 128, shards)
    assert isinstance(objective, MaskedLM)
    data = TokenShards(shards, "train")
    original_rng, rng = np.random.default_rng(0), np.random.default_rng(0)
    batch = objective.batch(data, rng, 256)
    idx, targets, segments = batch["idx"], batch["targets"], batch["segments"]
    assert idx.shape == targets.shape == segments.shape == (256, 128)
    special = torch.tensor(added_token_ids(shards.parent / "tokenizer.json"))
    # [CLS] A [SEP] B [SEP], segment 0 up to the first [SEP], 1 after it
    assert (idx[:, 0] == objective.cls).all() and (idx[:, -1] == objective.sep).all()
    first_sep = (idx == objective.sep).int().argmax(dim=1)
    assert all((segments[r, :first_sep[r] + 1] == 0).all() and (segments[r, first_sep[r] + 1:] == 1).all()
               for r in range(256))
    scored = targets != IGNORE
    ordinary = ~torch.isin(torch.where(scored, targets, idx), special)
    share = scored.sum().item() / ordinary.sum().item()
    assert 0.14 < share < 0.16, share  # 15% of the ordinary tokens selected
    masked = (idx == objective.mask) & scored
    kept = (idx == targets) & scored
    assert 0.77 < masked.sum().item() / scored.sum().item() < 0.83  # 80% [MASK]
    assert 0.08 < kept.sum().item() / scored.sum().item() < 0.12  # 10% unchanged (+ random draws of the same token)
    assert not torch.isin(targets[scored], special).any(), "special tokens are never selected"
    labels = batch["nsp_labels"]
    assert 0.4 < labels.float().mean().item() < 0.6, "NSP labels balanced"
    # dynamic masking: the next batch masks other positions
    again = objective.batch(data, original_rng, 256)
    assert torch.equal(again["idx"], idx), "same seed, same batch"
    assert not torch.equal(objective.batch(data, rng, 256)["targets"] != IGNORE, scored)


def test_masked_lm_without_next_sentence(tokenizers):
    objective = objective_for("bert", 64, tokenizers["wordpiece"], nsp=False)
    batch = objective.batch(TokenShards(tokenizers["wordpiece"], "train"), np.random.default_rng(1), 8)
    assert "nsp_labels" not in batch and (batch["segments"] == 0).all() and batch["idx"].shape == (8, 64)


def test_span_corruption_sentinels_match(tokenizers):
    shards = tokenizers["unigram"]
    objective = objective_for("t5", 128, shards)
    assert isinstance(objective, SpanCorruption)
    data = TokenShards(shards, "train")
    batch = objective.batch(data, np.random.default_rng(0), 64)
    idx, targets, dec = batch["idx"], batch["targets"], batch["decoder_idx"]
    assert idx.shape == (64, 128) and targets.shape == dec.shape == (64, objective.target_len)
    assert (dec[:, 0] == objective.pad).all() and torch.equal(dec[:, 1:], targets[:, :-1])
    sentinels = torch.tensor(objective.sentinels)
    rng = np.random.default_rng(0)
    for row, window in zip(range(64), data.sample_windows(rng, 64, objective.raw)):
        inp, tgt = idx[row].tolist(), targets[row].tolist()
        in_sent = [t for t in inp if t in objective.sentinels]
        out_sent = [t for t in tgt if t in objective.sentinels]
        assert in_sent == out_sent == objective.sentinels, "each sentinel once, in order, on both sides"
        # putting the spans back where their sentinels stand gives the original window
        spans, current = {}, None
        for t in tgt[:-1]:
            if t in objective.sentinels:
                current = t
                spans[current] = []
            else:
                spans[current].append(t)
        restored = [x for t in inp[:inp.index(objective.eos)] for x in (spans[t] if t in objective.sentinels else [t])]
        assert restored == window.tolist()
    noise = (~torch.isin(targets, sentinels) & (targets != objective.eos)).sum().item() / (64 * objective.raw)
    assert abs(noise - 0.15) < 0.01
    mean_span = objective.noise / objective.spans
    assert 2.5 < mean_span < 3.5


def test_missing_special_tokens_are_named(tokenizers):
    with pytest.raises(MissingSpecialTokens, match=r"\[CLS\], \[SEP\], \[MASK\].*wordpiece"):
        objective_for("bert", 64, tokenizers["byte_bpe"])
    with pytest.raises(MissingSpecialTokens, match="<extra_id_3>.*sentinel_tokens"):
        objective_for("t5", 128, tokenizers["unigram_few"])
    assert isinstance(objective_for("gpt", 64, tokenizers["wordpiece"]), CausalLM)


@pytest.mark.parametrize("family,tokenizer", [("gpt", "byte_bpe"), ("bert", "wordpiece"), ("t5", "unigram")])
def test_a_short_training_run_lowers_the_loss(tokenizers, family, tokenizer):
    """200 AdamW steps of a small model on its objective's batches of real text."""
    from llm_core.models import TransformerConfig, build_model

    shards = tokenizers[tokenizer]
    data = TokenShards(shards, "train")
    torch.manual_seed(0)
    model = build_model(TransformerConfig(vocab_size=data.vocab_size, family=family, block_size=64, n_layer=2,
                                          n_embd=64, n_head=4, position="rotary" if family == "t5" else "learned"))
    objective = objective_for(family, 64, shards)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    held_out = objective.batch(TokenShards(shards, "val"), np.random.default_rng(1), 64)
    with torch.no_grad():
        before = model(**held_out)[1].item()
    for _ in range(200):
        loss = model(**objective.batch(data, rng, 16))[1]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = model(**held_out)[1].item()
    assert after < before - 0.5, (before, after)  # nats


def test_each_family_is_served_as_text_in_text_out(tokenizers, tmp_path):
    from llm_core.models import TransformerConfig, build_model
    from llm_core.serving import TextGenerator

    for family, tokenizer, prompt in (("bert", "wordpiece", "to be or [MASK] to be"),
                                      ("t5", "unigram", "to be or <extra_id_0> to be")):
        shards = tokenizers[tokenizer]
        model = build_model(TransformerConfig(vocab_size=TokenShards(shards, "train").vocab_size, family=family,
                                              block_size=32, n_layer=1, n_embd=32, n_head=2))
        torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict()}, tmp_path / f"{family}.pt")
        served = TextGenerator().load(tmp_path / f"{family}.pt", shards.parent / "tokenizer.json")
        (answer,) = served.predict(None, [prompt], {"max_new_tokens": 5})
        assert isinstance(answer, str) and answer
        if family == "bert":
            assert "[MASK]" not in answer and answer.startswith("to be or")
            with pytest.raises(ValueError, match=r"put at least one \[MASK\]"):
                served.predict(None, ["no mask here"])
