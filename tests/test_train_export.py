"""model.pt holds the optimizer's fp32 master weights, not the 16-bit copies bf16 trains with.

Real DeepSpeed on CPU (gloo): a few bf16 steps, then the exported weights are compared with
what DeepSpeed itself saved in its checkpoint.
"""

import pytest
import torch

from llm_core.config import ModelConfig, TrainConfig
from llm_core.tokenizer.train import SHARDS_DIR
from llm_core.train import MODEL_FILE, load_model, train

TINY = ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=32)


@pytest.fixture(scope="module")
def shards(tokenized):
    out = tokenized(vocab_size=512)
    return out / SHARDS_DIR


def train_bf16(shards, tmp_path, zero_stage, nproc_per_node=1):
    config = TrainConfig(model=TINY, precision="bf16", zero_stage=zero_stage, nproc_per_node=nproc_per_node,
                         micro_batch_size=4, grad_accum_steps=1, max_steps=5, warmup_steps=1, lr=1e-3, log_every=5)
    out = tmp_path / "train"
    out.mkdir()
    train(config, shards, out)
    return out, torch.load(out / MODEL_FILE, weights_only=True)["state_dict"]


def assert_genuinely_fp32(exported):
    assert all(w.dtype == torch.float32 for w in exported.values())
    assert any((w != w.bfloat16().float()).any() for w in exported.values()), "no weight has fp32 precision"


def assert_rounds_to_the_trained_bf16_weights(exported, checkpoint_dir):
    """Rounded to bf16, each weight is the 16-bit copy the model trained with (which ZeRO 0-2
    save whole as the checkpoint's ``module``)."""
    trained = torch.load(checkpoint_dir / "final" / "mp_rank_00_model_states.pt", weights_only=False)["module"]
    assert set(exported) == set(trained)
    for name, w in exported.items():
        assert trained[name].dtype == torch.bfloat16 and torch.equal(w.bfloat16(), trained[name]), name


@pytest.mark.parametrize("zero_stage, nproc_per_node", [(2, 1), (3, 2)])
def test_zero_bf16_exports_the_fp32_master_weights(shards, tmp_path, zero_stage, nproc_per_node):
    """Under ZeRO the master weights are partitioned: compare with DeepSpeed's own consolidation."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    out, exported = train_bf16(shards, tmp_path, zero_stage, nproc_per_node)
    assert_genuinely_fp32(exported)
    if zero_stage < 3:  # ZeRO-3 saves partitions only
        assert_rounds_to_the_trained_bf16_weights(exported, out / "checkpoint")
    master = get_fp32_state_dict_from_zero_checkpoint(str(out / "checkpoint"), tag="final")
    assert set(exported) == set(master)
    for name, w in exported.items():
        assert torch.equal(w, master[name]), name
    load_model(out / MODEL_FILE)  # still the format load_model reads


def test_zero0_bf16_exports_the_fp32_master_weights(shards, tmp_path):
    """Without ZeRO, DeepSpeed keeps the fp32 copies in FP16_UnfusedOptimizer (saved as ``fp32_groups``)."""
    out, exported = train_bf16(shards, tmp_path, zero_stage=0)
    assert_genuinely_fp32(exported)
    assert_rounds_to_the_trained_bf16_weights(exported, out / "checkpoint")
    saved = torch.load(out / "checkpoint" / "final" / "mp_rank_00_model_states.pt", weights_only=False)
    masters = [m for group in saved["optimizer"]["fp32_groups"] for m in group]
    for name, w in exported.items():
        assert any(m.shape == w.shape and torch.equal(m, w) for m in masters), name
    load_model(out / MODEL_FILE)
