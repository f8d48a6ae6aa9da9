"""The evaluate stage on a real tiny GPT trained here (DeepSpeed on CPU, ~1 min): rolling
windows, WikiText-2 as an external set, the continuation task and sampling options."""

import json
import math

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer
from torch.nn import functional as F

from llm_core.config import EvaluateConfig, ModelConfig, TrainConfig
from llm_core.evaluate import REPORT_JSON, REPORT_MD, evaluate
from llm_core.evaluate.config import EvalDataset
from llm_core.evaluate.datasets import load_documents
from llm_core.models.generate import filter_logits, generate
from llm_core.evaluate.rolling import document_loglikelihoods
from llm_core.tokenizer import TOKENIZER_FILE
from llm_core.tokenizer.shards import TokenShards
from llm_core.tokenizer.train import SHARDS_DIR
from llm_core.train import MODEL_FILE, load_model, train

BLOCK = 64


@pytest.fixture(scope="module")
def trained(tokenized, tmp_path_factory):
    """(tokenizer stage output, model file): 60 steps on Shakespeare, as tests/test_train_evaluate.py trains."""
    tmp = tmp_path_factory.mktemp("evaluate")
    tok = tokenized(vocab_size=512)
    out = tmp / "train"
    out.mkdir()
    config = TrainConfig(model=ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=BLOCK), micro_batch_size=8,
                         grad_accum_steps=2, max_steps=60, lr=3e-3, warmup_steps=5, log_every=30)
    train(config, tok / SHARDS_DIR, out)
    return tok, out / MODEL_FILE


@pytest.fixture(scope="module")
def model(trained):
    torch.manual_seed(0)
    return load_model(trained[1])


@pytest.fixture(scope="module")
def tokenizer(trained):
    return Tokenizer.from_file(str(trained[0] / TOKENIZER_FILE))


@pytest.fixture(scope="module")
def eot(trained):
    return TokenShards(trained[0] / SHARDS_DIR, "val").meta["eot_id"]


@pytest.fixture(scope="module")
def paragraphs(wikitext, tokenizer):
    """WikiText-2's paragraphs as token ids."""
    docs = load_documents(EvalDataset(name="w", path=str(wikitext), split="paragraphs", max_docs=400))
    return [e.ids for e in tokenizer.encode_batch(docs, add_special_tokens=False)]


@torch.no_grad()
def single_pass_nll(model, ids, eot):
    logits, _ = model(torch.tensor([[eot] + ids[:-1]]))
    return F.cross_entropy(logits[0].double(), torch.tensor(ids), reduction="sum").item()


def test_rolling_windows_equal_one_pass_when_the_text_fits(model, paragraphs, eot):
    short = [ids[:n] for ids, n in zip([p for p in paragraphs if len(p) >= BLOCK][:6], (BLOCK, 40, 17, 1, BLOCK, 63))]
    batched = document_loglikelihoods(model, short, prefix_token=eot, batch_size=4)
    for ids, (nll, count) in zip(short, batched):
        assert count == len(ids)
        assert nll / count == pytest.approx(single_pass_nll(model, ids, eot) / count, abs=1e-5)
    strided = document_loglikelihoods(model, short, prefix_token=eot, stride=8)
    assert [n for n, _ in strided] == pytest.approx([n for n, _ in batched], abs=1e-4), "one window: stride is moot"
    alone = [document_loglikelihoods(model, [ids], prefix_token=eot)[0][0] for ids in short]
    assert alone == pytest.approx([n for n, _ in batched], abs=1e-4), "documents batched together score as alone"


def test_every_token_is_scored_once(model, paragraphs, eot):
    long = [p for p in paragraphs if len(p) > 3 * BLOCK][:12]
    assert len(long) == 12
    disjoint = document_loglikelihoods(model, long, prefix_token=eot)
    overlapping = document_loglikelihoods(model, long, prefix_token=eot, stride=BLOCK // 4)
    assert [c for _, c in disjoint] == [c for _, c in overlapping] == [len(p) for p in long]
    # Two disjoint windows by hand: the second predicts tokens 64..127 from tokens 63..126.
    manual = single_pass_nll(model, long[0][:BLOCK], eot) + \
        single_pass_nll(model, long[0][BLOCK : 2 * BLOCK], long[0][BLOCK - 1])
    two_windows = document_loglikelihoods(model, [long[0][: 2 * BLOCK]], prefix_token=eot)[0][0]
    assert two_windows == pytest.approx(manual, rel=1e-5)


def test_a_smaller_stride_gives_more_context_and_a_lower_loss(model, trained, eot):
    """On held-out text of the kind the model learnt (the validation documents, ~40k
    tokens): each later window's first token sees 49 tokens instead of 1."""
    tokens = np.concatenate([np.asarray(s, dtype=np.int64) for s in TokenShards(trained[0] / SHARDS_DIR, "val").shards])
    docs = [d[d != eot].tolist() for d in np.split(tokens, np.flatnonzero(tokens == eot) + 1)]
    docs = [d for d in docs if len(d) > 2 * BLOCK]
    assert docs

    def loss(stride):
        scored = document_loglikelihoods(model, docs, prefix_token=eot, stride=stride, batch_size=32)
        assert [c for _, c in scored] == [len(d) for d in docs]
        return sum(n for n, _ in scored) / sum(c for _, c in scored)

    disjoint, overlapping = loss(BLOCK), loss(BLOCK // 4)
    assert overlapping < disjoint, (overlapping, disjoint)


def test_evaluate_scores_wikitext_and_continues_passages(trained, wikitext, tmp_path):
    tok, model_file = trained
    config = EvaluateConfig(num_samples=2, sample_tokens=12, top_p=0.9, datasets=[
        EvalDataset(name="wikitext2", path=str(wikitext)),
        EvalDataset(name="wikitext2_paragraphs", path=str(wikitext), split="paragraphs", max_docs=50, stride=32)])
    metrics = evaluate(config, tok / TOKENIZER_FILE, tok / SHARDS_DIR, model_file, tmp_path)
    wiki = metrics["datasets"]["wikitext2"]
    assert set(wiki) >= {"bits_per_byte", "word_perplexity", "byte_perplexity", "token_perplexity", "docs", "tokens"}
    assert wiki["docs"] == 1 and wiki["stride"] == BLOCK and wiki["bytes"] == len(load_documents(
        config.datasets[0])[0].encode("utf-8"))
    assert 1.0 < wiki["bits_per_byte"] < 8.0, "a tiny Shakespeare model on Wikipedia: better than uniform bytes"
    assert wiki["byte_perplexity"] == pytest.approx(2 ** wiki["bits_per_byte"], rel=1e-4)
    assert wiki["word_perplexity"] > wiki["token_perplexity"] > wiki["byte_perplexity"]
    print(f"\nwikitext-2 raw test, tiny model: {wiki}")
    assert metrics["datasets"]["wikitext2_paragraphs"]["docs"] == 50
    assert metrics["datasets"]["wikitext2_paragraphs"]["stride"] == 32

    task = metrics["continuation"]
    assert task["source"] == "datasets.wikitext2" and task["passages"] == 20 and task["prompt_tokens"] == 32
    assert 0 <= task["bleu"] <= 100 and task["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert all(0 <= task[k] <= 1 for k in ("rouge1", "rouge2", "rougeL"))
    report = json.loads((tmp_path / REPORT_JSON).read_text())
    assert report["metrics"]["datasets"]["wikitext2"] == wiki
    assert len(report["continuation_examples"]) == 3 and all(e["reference"] for e in report["continuation_examples"])
    md = (tmp_path / REPORT_MD).read_text()
    assert "| wikitext2 | " in md and task["bleu_signature"] in md and "## Samples" in md

    again = tmp_path / "again"
    again.mkdir()
    plain = evaluate(EvaluateConfig(num_samples=1, sample_tokens=4, continuation={"num_docs": 5}),
                     tok / TOKENIZER_FILE, tok / SHARDS_DIR, model_file, again)
    assert "datasets" not in plain and plain["val_loss"] == metrics["val_loss"]
    assert plain["continuation"]["source"] == "validation split" and plain["continuation"]["passages"] == 5


def test_sampling_is_seeded_and_greedy_is_top_k_one(model, paragraphs):
    prompt = torch.tensor([paragraphs[1][:8], paragraphs[3][:8]])

    def draw(seed, **options):
        return generate(model, prompt, 16, generator=torch.Generator().manual_seed(seed), **options)

    for options in ({"temperature": 0.8, "top_k": 50}, {"temperature": 1.0, "top_p": 0.9}):
        assert torch.equal(draw(1, **options), draw(1, **options)), "same seed, same text"
        assert not torch.equal(draw(1, **options), draw(2, **options))
    greedy = generate(model, prompt, 16, greedy=True)
    assert torch.equal(greedy, draw(3, top_k=1)) and torch.equal(greedy, draw(4, top_k=1, temperature=2.0))
    assert torch.equal(greedy, draw(5, top_p=1e-6)), "the smallest nucleus is the most likely token"


def test_top_p_keeps_the_smallest_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = lambda p: torch.isfinite(filter_logits(logits, top_p=p))[0].tolist()  # noqa: E731
    assert kept(0.5) == [True, False, False, False]
    assert kept(0.6) == [True, True, False, False]
    assert kept(0.79) == [True, True, False, False], "0.5 + 0.3 reaches 0.79"
    assert kept(0.81) == [True, True, True, False]
    assert kept(1.0) == [True] * 4
    shuffled = logits[:, [2, 0, 3, 1]]
    assert torch.isfinite(filter_logits(shuffled, top_p=0.6))[0].tolist() == [False, True, False, True]
    assert torch.isfinite(filter_logits(logits, top_k=3, top_p=0.99))[0].tolist() == [True, True, True, False]
    assert math.isinf(filter_logits(logits, top_k=1)[0, 1].item())


def test_samples_come_from_the_configured_prompts(trained, tmp_path):
    from llm_core.errors import StageError

    tok, model_file = trained
    config = EvaluateConfig(sample_tokens=6, prompts=["ROMEO:", "To be, or not"], continuation={"num_docs": 0},
                            max_batches=1)
    evaluate(config, tok / TOKENIZER_FILE, tok / SHARDS_DIR, model_file, tmp_path)
    samples = json.loads((tmp_path / REPORT_JSON).read_text())["samples"]
    assert [s["prompt"] for s in samples] == ["ROMEO:", "To be, or not"] and all(s["completion"] for s in samples)
    again = tmp_path / "again"
    again.mkdir()
    evaluate(config, tok / TOKENIZER_FILE, tok / SHARDS_DIR, model_file, again)
    assert json.loads((again / REPORT_JSON).read_text())["samples"] == samples, "seeded"
    with pytest.raises(StageError, match="evaluate.prompts: 'word word word"):
        evaluate(config.model_copy(update={"prompts": ["word " * 200]}), tok / TOKENIZER_FILE, tok / SHARDS_DIR,
                 model_file, tmp_path / "bad")


def test_the_stage_scores_multiple_choice_tasks(trained, tmp_path):
    from pathlib import Path

    from llm_core.evaluate.choice import score_choice_task
    from llm_core.evaluate.config import ChoiceTask

    tok, model_file = trained
    task = Path(__file__).parent / "data" / "choice" / "task.jsonl"
    config = EvaluateConfig(num_samples=0, continuation={"num_docs": 0}, max_batches=1,
                            choice_tasks=[ChoiceTask(name="toy", path=str(task))])
    metrics = evaluate(config, tok / TOKENIZER_FILE, tok / SHARDS_DIR, model_file, tmp_path)
    tokenizer = Tokenizer.from_file(str(tok / TOKENIZER_FILE))
    direct = score_choice_task(load_model(model_file), tokenizer, task, tokenizer.token_to_id("<|endoftext|>"), 8)
    assert metrics["choice"]["toy"] == direct and metrics["choice"]["toy"]["docs"] == 10
    assert "| toy | " in (tmp_path / REPORT_MD).read_text()
