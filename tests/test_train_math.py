"""The training arithmetic: LAMB against a numpy transcription of the paper, and the cost/MFU figures."""

import copy
import sys

import numpy as np
import pytest
import torch

from llm_core.models.block import flops_per_token
from llm_core.train.cost import PowerMeter, estimate_run, mfu, peak_tflops
from llm_core.train.lamb import Lamb, lamb_trust_ratios


def reference_lamb_step(p, g, m, v, t, lr, beta1, beta2, eps, wd, lo, hi):
    """Algorithm 2 of You et al. 2019 for one tensor, in float64 numpy; returns (p, m, v, ratio)."""
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    u = (m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + eps) + wd * p
    p_norm, u_norm = np.linalg.norm(p), np.linalg.norm(u)
    ratio = float(np.clip(p_norm / u_norm, lo, hi)) if p_norm > 0 and u_norm > 0 else 1.0
    return p - lr * ratio * u, m, v, ratio


def params_with_grads(*pairs):
    params = []
    for value, grad in pairs:
        p = torch.nn.Parameter(torch.tensor(value, dtype=torch.float32))
        p.grad = torch.tensor(grad, dtype=torch.float32)
        params.append(p)
    return params


def test_two_steps_match_the_papers_algorithm():
    rng = np.random.default_rng(0)
    values = [rng.normal(size=(3, 4)), rng.normal(size=5)]
    hyper = dict(lr=0.01, beta1=0.9, beta2=0.99, eps=1e-6, wd=0.1, lo=0.01, hi=10.0)
    params = params_with_grads(*[(v, np.zeros_like(v)) for v in values])
    opt = Lamb(params, lr=0.01, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.1)
    ref = [(v.astype(np.float32).astype(np.float64), np.zeros_like(v), np.zeros_like(v)) for v in values]
    for t in (1, 2):
        grads = [rng.normal(size=v.shape) for v in values]
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g, dtype=torch.float32)
        opt.step()
        stepped = [reference_lamb_step(p, g.astype(np.float32), m, v, t, **hyper) for (p, m, v), g in zip(ref, grads)]
        ref = [(p, m, v) for p, m, v, _ in stepped]
        for param, (p, _, _) in zip(params, ref):
            np.testing.assert_allclose(param.detach().numpy(), p, atol=1e-6)
        assert lamb_trust_ratios(opt) == pytest.approx([r for *_, r in stepped], rel=1e-5)


def test_trust_ratio_is_clamped_to_min_and_max_coeff():
    # ||p|| = 100 and a unit-sized first Adam step per element: the raw ratio is far above 2
    opt = Lamb(params_with_grads((np.full(4, 50.0), np.ones(4))), lr=0.1, max_coeff=2.0)
    opt.step()
    assert lamb_trust_ratios(opt) == [pytest.approx(2.0)]
    # ||p|| tiny against ||u|| = 2: the raw ratio is far below 0.5
    opt = Lamb(params_with_grads((np.full(4, 1e-4), np.ones(4))), lr=0.1, min_coeff=0.5)
    opt.step()
    assert lamb_trust_ratios(opt) == [pytest.approx(0.5)]


def test_zero_norm_parameter_gets_ratio_one():
    (p,) = params_with_grads((np.zeros(3), np.array([1.0, -2.0, 3.0])))
    opt = Lamb([p], lr=0.1)
    opt.step()
    assert lamb_trust_ratios(opt) == [1.0]
    # first bias-corrected Adam step is sign(g) (up to eps), taken with the full lr
    np.testing.assert_allclose(p.detach().numpy(), [-0.1, 0.1, -0.1], atol=1e-6)


def test_weight_decay_zero_group_is_not_decayed():
    decayed, plain = params_with_grads((np.ones(4), np.zeros(4)), (np.ones(4), np.zeros(4)))
    opt = Lamb([{"params": [decayed]}, {"params": [plain], "weight_decay": 0.0}], lr=0.1, weight_decay=0.5)
    opt.step()
    assert torch.equal(plain.detach(), torch.ones(4))  # zero gradient, no decay: untouched
    assert (decayed.detach() < 1).all()


def test_sparse_gradients_and_non_fp32_params_are_refused():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3).to_sparse()
    with pytest.raises(TypeError, match="sparse"):
        Lamb([p]).step()
    q = torch.nn.Parameter(torch.ones(3, dtype=torch.bfloat16))
    q.grad = torch.ones(3, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="fp32"):
        Lamb([q]).step()


def least_squares():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=gen)
    y = x @ torch.randn(8, 1, generator=gen) + 0.5
    model = torch.nn.Linear(8, 1)
    torch.nn.init.normal_(model.weight, generator=gen)
    return model, lambda: torch.nn.functional.mse_loss(model(x), y)


def train(model, loss_fn, opt, steps):
    for _ in range(steps):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()


def test_lamb_lowers_a_least_squares_loss():
    torch.manual_seed(0)
    model, loss_fn = least_squares()
    start = loss_fn().item()
    opt = Lamb([{"params": [model.weight]}, {"params": [model.bias], "weight_decay": 0.0}], lr=0.05, weight_decay=0.01)
    train(model, loss_fn, opt, 200)
    assert loss_fn().item() < 0.1 * start


def test_state_dict_round_trip_continues_exactly():
    torch.manual_seed(0)
    model, loss_fn = least_squares()
    opt = Lamb(model.parameters(), lr=0.05, weight_decay=0.01)
    train(model, loss_fn, opt, 3)
    saved_model = {k: v.clone() for k, v in model.state_dict().items()}
    saved_opt = copy.deepcopy(opt.state_dict())  # state_dict() shares the live moment tensors
    train(model, loss_fn, opt, 1)
    uninterrupted = {k: v.clone() for k, v in model.state_dict().items()}

    model.load_state_dict(saved_model)
    resumed = Lamb(model.parameters(), lr=0.05, weight_decay=0.01)
    resumed.load_state_dict(saved_opt)
    train(model, loss_fn, resumed, 1)
    for name, value in model.state_dict().items():
        assert torch.equal(value, uninterrupted[name]), name


def test_flops_per_token_of_gpt2_small():
    fpt = flops_per_token(124_000_000, n_layer=12, n_embd=768, block_size=1024)
    assert fpt == 6 * 124e6 + 12 * 12 * 768 * 1024 == 857_246_208


def test_mfu_arithmetic():
    # 1e5 tokens/s * 1e9 FLOPs/token = 1e14 FLOP/s, on 2 devices of 100 TFLOPS
    assert mfu(1e5, 1e9, peak_tflops=100.0, n_devices=2) == pytest.approx(0.5)
    assert mfu(1e5, 1e9, peak_tflops=312.0) == pytest.approx(100 / 312)


def test_estimate_run_with_and_without_prices():
    run = estimate_run(3.6e9, 1e9, 1e6, power_w=1000.0, price_per_kwh=0.2, price_per_hour=2.0)
    # 3600 s at 1 kW = 1 kWh: 0.2 for power plus 1 h * 2.0 rent
    assert run == pytest.approx({"flops_total": 3.6e18, "time_s": 3600.0, "energy_kwh": 1.0, "cost": 2.2})
    unpriced = estimate_run(3.6e9, 1e9, 1e6, power_w=None, price_per_kwh=None, price_per_hour=None)
    assert unpriced == {"flops_total": 3.6e18, "time_s": 3600.0, "energy_kwh": None, "cost": None}
    rented = estimate_run(3.6e9, 1e9, 1e6, power_w=None, price_per_kwh=None, price_per_hour=2.0)
    assert rented["cost"] == pytest.approx(2.0)
    assert estimate_run(3.6e9, 1e9, 1e6, power_w=None, price_per_kwh=0.2, price_per_hour=2.0)["cost"] is None


@pytest.mark.parametrize("name, precision, expected", [
    ("NVIDIA H100 80GB HBM3", "bf16", 989.4),
    ("NVIDIA H100 PCIe", "bf16", 756.0),
    ("NVIDIA H200", "fp16", 989.4),
    ("NVIDIA A100-SXM4-80GB", "fp32", 156.0),
    ("NVIDIA L4", "bf16", 121.0),
    ("Tesla V100-SXM2-16GB", "fp16", 125.0),
    ("Tesla V100-SXM2-16GB", "bf16", None),
    ("NVIDIA L40S", "bf16", None),  # "L4" is not a word of it
    ("NVIDIA A10G", "bf16", None),
    ("cpu", "fp32", None),
])
def test_peak_tflops_by_device_name(name, precision, expected):
    assert peak_tflops(name, precision) == expected


def test_power_meter_without_nvml_measures_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails, as on a machine without nvidia-ml-py
    assert PowerMeter.available() is False
    meter = PowerMeter(interval_s=0.01)
    meter.start()
    assert meter.stop() is None
