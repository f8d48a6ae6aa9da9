"""The shared transformer: sliding-window attention equals its dense mask, rotary positions
depend on offsets only, shapes that do not fit are refused, and GPT files written before the
model families load unchanged."""

import pytest
import torch
from torch.nn import functional as F

from llm_core.models import BERT, GPT, T5, TransformerConfig, build_model, load_model
from llm_core.models.attention import Rotary, sliding_window_attention, sliding_window_mask
from llm_core.train.config import ModelConfig


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T,window,global_tokens", [(64, 8, 0), (61, 8, 0), (50, 7, 3), (40, 16, 2)])
def test_sliding_window_equals_dense_with_its_mask(causal, T, window, global_tokens):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, T, 8, dtype=torch.float64) for _ in range(3))
    mask = sliding_window_mask(T, window, causal, global_tokens)
    dense = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    local = sliding_window_attention(q, k, v, window, causal, global_tokens)
    torch.testing.assert_close(local, dense, rtol=1e-10, atol=1e-10)


def test_sliding_window_gradients_match_dense():
    torch.manual_seed(1)
    q, k, v = (torch.randn(1, 2, 33, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = sliding_window_mask(33, 5, True, 2)
    dense = torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum(), (q, k, v))
    local = torch.autograd.grad(sliding_window_attention(q, k, v, 5, True, 2).sum(), (q, k, v))
    for a, b in zip(local, dense):
        torch.testing.assert_close(a, b)


def test_rotary_scores_depend_on_the_offset_only():
    torch.manual_seed(2)
    rotary = Rotary(16)
    q, k = torch.randn(16), torch.randn(16)
    at = torch.zeros(1, 1, 40, 16)

    def score(m, n):
        qs, ks = at.clone(), at.clone()
        qs[0, 0, m], ks[0, 0, n] = q, k
        return (rotary(qs)[0, 0, m] @ rotary(ks)[0, 0, n]).item()

    assert score(5, 2) == pytest.approx(score(35, 32), abs=1e-4)
    assert score(5, 2) != pytest.approx(score(5, 4), abs=1e-3)


def test_rotary_runs_past_the_training_context_and_learned_positions_do_not():
    x = torch.randint(0, 50, (1, 48))
    rotary = GPT(TransformerConfig(vocab_size=50, block_size=16, position="rotary"))
    assert rotary(x)[0].shape == (1, 48, 50)
    with pytest.raises(ValueError, match="exceeds the model's 16 learned positions"):
        GPT(TransformerConfig(vocab_size=50, block_size=16))(x)


@pytest.mark.parametrize("settings,message", [
    ({"block_size": 256, "max_positions": 128}, "longer than the 128 learned positions"),
    ({"n_embd": 100, "n_head": 3}, "divisible by n_head"),
    ({"n_embd": 24, "n_head": 8, "position": "rotary"}, "even head width"),
])
def test_shapes_that_do_not_fit_are_config_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**settings)


def test_every_family_counts_its_parameters_and_flops():
    for family, cls in (("gpt", GPT), ("bert", BERT), ("t5", T5)):
        model = build_model(TransformerConfig(vocab_size=100, family=family))
        assert isinstance(model, cls) and model.num_params() > 0
        assert model.flops_per_token() > 6 * model.num_params() * (0.5 if family == "t5" else 1)
    dense = GPT(TransformerConfig(vocab_size=100, block_size=1024))
    local = GPT(TransformerConfig(vocab_size=100, block_size=1024, attention="sliding", window=64))
    assert local.flops_per_token() < dense.flops_per_token()


def test_a_gpt_file_from_before_the_families_loads(tmp_path):
    """model.pt files hold the config as it was: no family, position or attention keys."""
    old_config = {"vocab_size": 60, "block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16, "dropout": 0.0,
                  "bias": False}
    model = GPT(TransformerConfig(**old_config)).eval()
    torch.save({"config": old_config, "state_dict": model.state_dict()}, tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt")
    x = torch.randint(0, 60, (2, 16))
    torch.testing.assert_close(loaded(x)[0], model(x)[0])
    torch.save({"config": {**old_config, "moe_experts": 8}, "state_dict": model.state_dict()}, tmp_path / "new.pt")
    with pytest.raises(ValueError, match="another version of llmpipe.*moe_experts"):
        load_model(tmp_path / "new.pt")


def test_a_sliding_window_model_matches_dense_attention_under_its_mask(monkeypatch):
    """A GPT with sliding attention (window 8, context 32: no padding, learned positions) computes
    what the dense kernel computes under the sliding mask."""
    import llm_core.models.attention as attention

    torch.manual_seed(3)
    model = GPT(TransformerConfig(vocab_size=50, block_size=32, attention="sliding", window=8, global_tokens=1)).eval()
    x = torch.randint(0, 50, (2, 32))
    local = model(x)[0]
    mask = sliding_window_mask(32, 8, True, 1)
    monkeypatch.setattr(attention, "sliding_window_attention",
                        lambda q, k, v, window, causal, g, dropout_p: F.scaled_dot_product_attention(q, k, v,
                                                                                                     attn_mask=mask))
    torch.testing.assert_close(local, model(x)[0])
