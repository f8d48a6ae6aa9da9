"""BERT and T5 through the train and evaluate stages: real DeepSpeed workers (gloo), the family
carried by the checkpoint and the stats, validation accuracy on the family's objective, and the
tokenizer that lacks the family's tokens refused before any worker starts."""

import json

import pytest

from llm_core.config import EvaluateConfig, ModelConfig, PipelineConfig, TrainConfig
from llm_core.errors import StageError
from llm_core.evaluate import evaluate
from llm_core.tokenizer import TOKENIZER_FILE
from llm_core.tokenizer.train import SHARDS_DIR
from llm_core.train import MODEL_FILE, load_model, train


@pytest.fixture(scope="module")
def family_tokenizers(tokenized):
    return {"wordpiece": tokenized(kind="wordpiece", vocab_size=600),
            "unigram": tokenized(kind="unigram", vocab_size=600, sentinel_tokens=20)}


@pytest.mark.parametrize("family,kind,accuracy", [("bert", "wordpiece", "mlm_accuracy"),
                                                   ("t5", "unigram", "target_accuracy")])
def test_family_trains_and_evaluates_on_its_objective(family_tokenizers, tmp_path, family, kind, accuracy):
    shards = family_tokenizers[kind]
    config = TrainConfig(model=ModelConfig(family=family, n_layer=2, n_head=2, n_embd=64, block_size=64,
                                           position="rotary"),
                         micro_batch_size=8, grad_accum_steps=1, max_steps=40, lr=3e-3, warmup_steps=4, log_every=10,
                         validation={"every_steps": 20, "batches": 2}, checkpoint={"every_steps": 0})
    out = tmp_path / "train"
    out.mkdir()
    stats = train(config, shards / SHARDS_DIR, out)
    assert stats["family"] == family and stats["final_val_accuracy"] is not None
    curve = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert curve[-1]["loss"] < curve[0]["loss"], curve
    model = load_model(out / MODEL_FILE)
    assert model.config.family == family and model.config.position == "rotary"
    eval_out = tmp_path / "eval"
    eval_out.mkdir()
    metrics = evaluate(EvaluateConfig(max_batches=4, num_samples=2), shards / TOKENIZER_FILE, shards / SHARDS_DIR,
                       out / MODEL_FILE, eval_out)
    assert 0 < metrics[accuracy] < 1 and "bits_per_byte" not in metrics
    assert ("nsp_accuracy" in metrics) == (family == "bert")


def test_a_tokenizer_without_the_family_tokens_fails_before_training(family_tokenizers, tmp_path):
    config = TrainConfig(model=ModelConfig(family="t5", block_size=64, n_embd=64), max_steps=2, warmup_steps=0)
    with pytest.raises(StageError, match=r"family t5 needs the tokenizer's <pad>, </s>"):
        train(config, family_tokenizers["wordpiece"] / SHARDS_DIR, tmp_path)
    assert not (tmp_path / "job.json").exists(), "no worker was started"


def test_a_next_token_champion_metric_is_refused_for_bert():
    with pytest.raises(ValueError, match="bits_per_byte is measured for GPTs only"):
        PipelineConfig.model_validate({"train": {"model": {"family": "bert"}}})
    PipelineConfig.model_validate({"train": {"model": {"family": "bert"}}, "project": {"champion_metric": "val_loss"}})
