"""Multiple-choice scoring by log-likelihood (llm_core.evaluate.choice) and the lm-evaluation-harness
adapter (llm_core.evaluate.lm_eval_adapter), on an untrained model: the figures only need to agree
with a hand computation and with the harness's own scoring of the same task."""

import json
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from llm_core.errors import StageError
from llm_core.evaluate import choice
from llm_core.models import GPT, TransformerConfig
from llm_core.models.generate import generate

TASK = Path(__file__).parent / "data" / "choice" / "task.jsonl"
EOT = "<|endoftext|>"
BLOCK = 16


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An (untrained) GPT in the train stage's model.pt format and a byte-level BPE tokenizer."""
    from tokenizers import ByteLevelBPETokenizer

    root = tmp_path_factory.mktemp("model")
    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 50, vocab_size=300,
                                  special_tokens=[EOT])
    tokenizer.save(str(root / "tokenizer.json"))
    torch.manual_seed(0)
    model = GPT(TransformerConfig(vocab_size=300, block_size=BLOCK, n_layer=1, n_head=2, n_embd=16))
    torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict()}, root / "model.pt")
    return root / "model.pt", root / "tokenizer.json"


@pytest.fixture(scope="module")
def loaded(files):
    from tokenizers import Tokenizer

    from llm_core.train import load_model

    model, tokenizer = load_model(files[0]), Tokenizer.from_file(str(files[1]))
    return model, tokenizer, tokenizer.token_to_id(EOT)


def encode(tokenizer, text):
    return tokenizer.encode(text, add_special_tokens=False).ids


@torch.no_grad()
def by_hand(model, tokenizer, eot_id, context, continuation):
    """The continuation's summed log-probability from one forward pass over (context + continuation),
    its first tokens dropped to fit the model as lm-eval drops them."""
    if context:
        context_ids = encode(tokenizer, context)
        cont = encode(tokenizer, context + continuation)[len(context_ids):]
    else:
        context_ids, cont = [eot_id], encode(tokenizer, continuation)
    window = (context_ids + cont)[-(BLOCK + 1):]
    logits, _ = model(torch.tensor([window[:-1]]))
    logprobs = F.log_softmax(logits[0].double(), dim=-1)
    first = len(window) - 1 - len(cont)  # the position whose output predicts cont[0]
    return sum(logprobs[first + j, t].item() for j, t in enumerate(cont))


def test_loglikelihoods_are_the_summed_log_probabilities_of_the_continuation(loaded):
    model, tokenizer, eot_id = loaded
    requests = [("the quick brown", " fox jumps"), ("", " lazy dog"), ("the lazy ", "dog")]
    got = choice.loglikelihoods(model, tokenizer, requests, eot_id, batch_size=2)
    for (context, continuation), (ll, greedy) in zip(requests[:2], got):
        assert ll == pytest.approx(by_hand(model, tokenizer, eot_id, context, continuation), abs=1e-4)
        assert ll < 0 and isinstance(greedy, bool)
    # a trailing space of the context belongs to the continuation, as lm-eval splits a pair
    # (the empty context above is conditioned on end-of-text: by_hand's [eot_id])
    assert got[2][0] == pytest.approx(by_hand(model, tokenizer, eot_id, "the lazy", " dog"), abs=1e-4)
    one_by_one = [choice.loglikelihoods(model, tokenizer, [r], eot_id, batch_size=1)[0][0] for r in requests]
    assert one_by_one == pytest.approx([ll for ll, _ in got], abs=1e-5), "padding a batch changes nothing"


def test_is_greedy_says_whether_every_token_was_the_most_likely(loaded):
    model, _, eot_id = loaded
    context = [eot_id, 10, 20, 30]
    with torch.no_grad():
        best = int(model(torch.tensor([context]))[0][0, -1].argmax())
    other = (best + 1) % 300
    (_, greedy), (_, not_greedy) = choice.token_loglikelihoods(model, [(context, [best]), (context, [other])])
    assert greedy and not not_greedy


def test_a_long_context_is_truncated_from_the_left_to_fit_the_block_size(loaded):
    model, tokenizer, eot_id = loaded
    context = "the quick brown fox jumps over the lazy dog " * 3 + "the quick brown"
    assert len(encode(tokenizer, context + " fox")) > BLOCK + 1
    ((ll, _),) = choice.loglikelihoods(model, tokenizer, [(context, " fox")], eot_id)
    assert ll == pytest.approx(by_hand(model, tokenizer, eot_id, context, " fox"), abs=1e-4)
    # only the last block_size tokens before the continuation's last token count
    ids = encode(tokenizer, context + " fox")
    kept = choice.token_loglikelihoods(model, [(ids[-(BLOCK + 1):-1], ids[-1:])])
    assert ll == pytest.approx(kept[0][0], abs=1e-5)
    with pytest.raises(ValueError, match="exceeds the model's block_size"):
        choice.loglikelihoods(model, tokenizer, [("the", " dog" * (BLOCK + 1))], eot_id)


def test_acc_and_acc_norm_of_a_task_file(loaded):
    model, tokenizer, eot_id = loaded
    docs = [json.loads(line) for line in TASK.read_text().splitlines()]
    acc = acc_norm = 0
    for doc in docs:
        lls = [by_hand(model, tokenizer, eot_id, doc["query"], " " + c) for c in doc["choices"]]
        acc += max(range(len(lls)), key=lambda i: (lls[i], -i)) == doc["gold"]
        normed = [ll / len(c) for ll, c in zip(lls, doc["choices"])]  # characters, as lm-eval's acc_norm
        acc_norm += max(range(len(lls)), key=lambda i: (normed[i], -i)) == doc["gold"]
    scores = choice.score_choice_task(model, tokenizer, TASK, eot_id, batch_size=4)
    assert scores == {"acc": acc / len(docs), "acc_norm": acc_norm / len(docs), "docs": len(docs)}


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("\n  \n", "is empty"),
    ('{"query": "a", "choices": ["b", "c"], "gold": 0}\n{"query": "a", "choices": ["b", "c"], gold: 0}\n',
     "line 2 is not JSON"),
    ('{"query": "a", "choices": ["b", "c"], "gold": 2}\n', "out of range for 2 choices"),
    ('{"query": "a", "choices": ["b", "c"], "gold": -1}\n', "out of range"),
    ('{"query": "a", "choices": ["b", "c"], "gold": true}\n', '"gold" must be the index'),
    ('{"query": "a", "choices": ["b"], "gold": 0}\n', "at least 2 choices, it has 1"),
    ('{"query": "a", "choices": "b c", "gold": 0}\n', '"choices" must be a list of strings'),
    ('{"choices": ["b", "c"], "gold": 0}\n', '"query" must be a string'),
    ('["a", "b"]\n', "is not a JSON object"),
    (json.dumps({"query": "a", "choices": ["b", "dog " * 20], "gold": 0}) + "\n", "exceeds the model's block_size"),
])
def test_a_bad_task_file_is_a_stage_error_naming_it(loaded, tmp_path, content, message):
    model, tokenizer, eot_id = loaded
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(StageError, match=message) as error:
        choice.score_choice_task(model, tokenizer, path, eot_id, batch_size=4)
    assert str(path) in str(error.value) and error.value.stage == "evaluate"
    with pytest.raises(StageError, match="is not a file"):
        choice.load_choice_task(tmp_path / "missing.jsonl")


# --- lm-evaluation-harness ---------------------------------------------------------------------

TASK_YAML = """\
task: llmpipe_choice_test
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
  cache_dir: {cache}
test_split: test
output_type: multiple_choice
doc_to_text: query
doc_to_choice: choices
doc_to_target: gold
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Nothing is downloaded: the Hugging Face libraries offline, their caches in tmp_path."""
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)


def instance(kind, args, idx=0):
    from lm_eval.api.instance import Instance

    return Instance(request_type=kind, doc={}, arguments=args, idx=idx)


def test_the_harness_scores_a_local_task_as_score_choice_task_does(files, loaded, offline, tmp_path):
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    from llm_core.evaluate.lm_eval_adapter import LLMPipeLM

    model, tokenizer, eot_id = loaded
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "llmpipe_choice_test.yaml").write_text(TASK_YAML.format(data=json.dumps(str(TASK)),
                                                                     cache=json.dumps(str(tmp_path / "cache"))))
    lm = LLMPipeLM(model_file=str(files[0]), tokenizer_file=str(files[1]), device="cpu", batch_size=4)
    results = lm_eval.simple_evaluate(model=lm, tasks=["llmpipe_choice_test"], bootstrap_iters=0,
                                      task_manager=TaskManager(include_path=str(tasks), include_defaults=False),
                                      log_samples=True)
    got = results["results"]["llmpipe_choice_test"]
    ours = choice.score_choice_task(model, tokenizer, TASK, eot_id, batch_size=4)
    assert ours["docs"] == 10
    assert got["acc,none"] == pytest.approx(ours["acc"])
    assert got["acc_norm,none"] == pytest.approx(ours["acc_norm"])
    # request by request: the harness asked what score_choice_task asks, and got its figures
    docs = choice.load_choice_task(TASK)
    for sample in results["samples"]["llmpipe_choice_test"]:
        doc = docs[sample["doc_id"]]
        assert [tuple(a) for a in sample["arguments"]] == choice.choice_requests([doc])
        expected = choice.loglikelihoods(model, tokenizer, choice.choice_requests([doc]), eot_id)
        assert [float(r[0][0]) for r in sample["resps"]] == pytest.approx([ll for ll, _ in expected], abs=1e-5)


def test_the_adapter_rolls_documents_and_generates_until_a_stop_string(files, loaded):
    pytest.importorskip("lm_eval")
    from llm_core.evaluate.lm_eval_adapter import LLMPipeLM

    model, tokenizer, eot_id = loaded
    lm = LLMPipeLM(model=model, tokenizer=tokenizer, batch_size=2)
    short = "the quick brown fox"
    (rolled, long_rolled) = lm.loglikelihood_rolling(
        [instance("loglikelihood_rolling", (short,)), instance("loglikelihood_rolling", (short * 5,), 1)])
    assert rolled == pytest.approx(by_hand(model, tokenizer, eot_id, "", short), abs=1e-4)
    assert long_rolled < rolled < 0
    # loglikelihood: choice.loglikelihoods
    (ll,) = lm.loglikelihood([instance("loglikelihood", ("the quick", " brown"))])
    assert ll[0] == pytest.approx(by_hand(model, tokenizer, eot_id, "the quick", " brown"), abs=1e-4)

    prompt = "the lazy dog"
    ids = torch.tensor([encode(tokenizer, prompt)])
    for max_gen_toks in (5, 40):  # 40 > block_size: the window slides, as in one generate() call
        out = generate(model, ids, max_gen_toks, greedy=True)[0, ids.size(1):].tolist()
        out = out[: out.index(eot_id)] if eot_id in out else out
        expected = tokenizer.decode(out)
        (text,) = lm.generate_until([instance("generate_until", (prompt, {"until": ["\u0000never"],
                                                                          "max_gen_toks": max_gen_toks}))])
        assert text == expected
    stop = expected.strip()[:2]
    assert stop, "the untrained model generated some text"
    (cut,) = lm.generate_until([instance("generate_until", (prompt, {"until": [stop], "max_gen_toks": 40}))])
    assert cut == expected.split(stop)[0]
    sampled = [lm.generate_until([instance("generate_until", (prompt, {"do_sample": True, "temperature": 1.0,
                                                                        "max_gen_toks": 8}))])[0]
               for _ in range(2)]
    assert all(isinstance(s, str) for s in sampled)


def test_the_adapter_loads_a_registered_model_by_uri(files, loaded, tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    import mlflow

    from llm_core import registry, tracking
    from llm_core.config import ProjectConfig
    from llm_core.evaluate.lm_eval_adapter import LLMPipeLM

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking.configure(ProjectConfig(data_root=tmp_path / "data", mlflow_experiment="choice"))
    with mlflow.start_run():
        version, _ = registry.register_model("gpt", "k1", *files, {"bits_per_byte": 2.0}, {"train_key": "k1"})
    registry.select_champion("gpt", version, "bits_per_byte")
    lm = LLMPipeLM.create_from_arg_string("model=models:/gpt@champion", {"batch_size": "auto", "device": "cpu"})
    model, tokenizer, eot_id = loaded
    assert lm.eot_token_id == eot_id and lm.max_length == BLOCK
    (ll,) = lm.loglikelihood([instance("loglikelihood", ("", " the quick"))])
    assert ll[0] == pytest.approx(by_hand(model, tokenizer, eot_id, "", " the quick"), abs=1e-4)
    with pytest.raises(ValueError, match="models:/NAME"):
        LLMPipeLM(model="gpt")


def test_llm_core_does_not_import_lm_eval():
    import subprocess
    import sys

    code = ("import sys, llm_core.evaluate, llm_core.evaluate.choice, llm_core.evaluate.lm; "
            "assert 'lm_eval' not in sys.modules, 'lm_eval imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_acc_norm_divides_by_characters_not_bytes():
    docs = [choice.ChoiceDoc("q", ("abc", "éé"), 0)]
    lls = [-3.0, -2.4]  # per character: -1.0 vs -1.2, choice 0; per UTF-8 byte: -1.0 vs -0.6, choice 1
    assert choice.choice_metrics(docs, lls) == {"acc": 0.0, "acc_norm": 1.0, "docs": 1}
