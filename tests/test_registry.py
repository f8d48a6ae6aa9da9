"""The model registry: one version per model output, champion / challenger by the configured
metric, the registered model served over HTTP by `mlflow models serve`."""

import json
import os
import subprocess
import sys
import time

import httpx
import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from llm_core import registry, tracking
from llm_core.config import ProjectConfig
from llm_core.models import GPT, TransformerConfig


@pytest.fixture
def model_files(tmp_path):
    """An (untrained) GPT in the train stage's model.pt format and a byte-level BPE tokenizer."""
    from tokenizers import ByteLevelBPETokenizer

    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 50, vocab_size=300,
                                  special_tokens=["<|endoftext|>"])
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    torch.manual_seed(0)
    model = GPT(TransformerConfig(vocab_size=300, block_size=16, n_layer=1, n_head=2, n_embd=16))
    torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict()}, tmp_path / "model.pt")
    return tmp_path / "model.pt", tmp_path / "tokenizer.json"


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = tracking.configure(ProjectConfig(data_root=tmp_path / "data", mlflow_experiment="registry"))
    return uri


def register(files, key, bpb):
    with mlflow.start_run():
        return registry.register_model("gpt", key, *files, {"bits_per_byte": bpb}, {"train_key": key})


def test_a_better_model_takes_the_champion_alias_and_a_worse_one_is_the_challenger(store, model_files):
    client = MlflowClient()
    v1, new = register(model_files, "k1", 2.0)
    assert (v1, new) == (1, True)
    assert register(model_files, "k1", 2.0) == (1, False), "one version per model output"
    first = registry.select_champion("gpt", v1, "bits_per_byte")
    assert (first.decision, first.champion, first.champion_before) == ("first champion", 1, None)

    v2, _ = register(model_files, "k2", 1.5)
    promoted = registry.select_champion("gpt", v2, "bits_per_byte")
    assert (promoted.decision, promoted.champion, promoted.champion_score_before) == ("promoted", 2, 2.0)
    assert client.get_model_version("gpt", "1").tags["bits_per_byte"] == "2.0", "the old champion keeps its version"

    v3, _ = register(model_files, "k3", 1.8)
    beaten = registry.select_champion("gpt", v3, "bits_per_byte")
    assert (beaten.decision, beaten.champion) == ("challenger", 2)
    assert int(client.get_model_version_by_alias("gpt", "champion").version) == 2
    assert int(client.get_model_version_by_alias("gpt", "challenger").version) == 3
    again = registry.select_champion("gpt", v3, "bits_per_byte")
    assert again.decision == "challenger", "a rerun changes nothing"
    assert int(client.get_model_version_by_alias("gpt", "champion").version) == 2
    assert "**challenger**" in registry.selection_markdown("gpt", beaten)
    assert client.get_model_version("gpt", "3").tags["lineage.train_key"] == "k3"


def test_higher_is_better_and_a_missing_metric(store, model_files):
    v1, _ = register(model_files, "k1", 2.0)
    registry.select_champion("gpt", v1, "bits_per_byte", higher_is_better=True)
    v2, _ = register(model_files, "k2", 2.5)
    assert registry.select_champion("gpt", v2, "bits_per_byte", higher_is_better=True).decision == "promoted"
    with pytest.raises(ValueError, match="has no 'accuracy' tag"):
        registry.select_champion("gpt", v2, "accuracy")


def test_the_registered_model_generates_text_and_refuses_a_prompt_longer_than_its_context(store, model_files):
    v1, _ = register(model_files, "k1", 2.0)
    model = mlflow.pyfunc.load_model(f"models:/gpt/{v1}")
    first = model.predict(["the quick"], params={"max_new_tokens": 4, "seed": 7})
    assert first == model.predict(["the quick"], params={"max_new_tokens": 4, "seed": 7}), "a seed fixes the sample"
    assert isinstance(first[0], str) and first[0]
    with pytest.raises(Exception, match="the model's context is 16"):
        model.predict(["the quick brown fox jumps over the lazy dog " * 3])


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_prompt_over_http(store, model_files, unused_port, tmp_path):
    v1, _ = register(model_files, "k1", 2.0)
    registry.select_champion("gpt", v1, "bits_per_byte")
    # The scoring server is `uvicorn`, found on PATH: the environment's bin folder, as an activated venv has it.
    env = {**os.environ, "MLFLOW_TRACKING_URI": store,
           "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/gpt@champion",
                               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(unused_port)],
                              env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{unused_port}/ping").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        answer = httpx.post(f"http://127.0.0.1:{unused_port}/invocations", timeout=60,
                            json={"dataframe_split": {"columns": ["prompt"], "data": [["the quick"]]},
                                  "params": {"max_new_tokens": 3}})
        assert answer.status_code == 200, answer.text
        (completion,) = json.loads(answer.text)["predictions"]
        assert isinstance(completion, str)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def test_llmpipe_generate_and_evaluate_a_registered_model(store, model_files, tmp_path, capsys):
    from flows.cli import main

    register(model_files, "k1", 2.0)
    registry.select_champion("gpt", 1, "bits_per_byte")
    base = ["--config", "configs/tiny.yaml", "--set", f"project.data_root={tmp_path / 'data'}",
            "--set", "project.mlflow_experiment=registry"]
    assert main(["generate", *base, "--model", "models:/gpt@champion", "--prompt", "the quick",
                 "--max-new-tokens", "4", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("the quick")
    assert main(["generate", *base, "--model", "models:/gpt@champion", "--prompt", "the quick",
                 "--max-new-tokens", "4", "--seed", "3"]) == 0
    assert capsys.readouterr().out == out, "a seed fixes the sample"

    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 20)
    assert main(["evaluate", *base, "--model", "models:/gpt/1", "--data", str(text), "--stride", "8"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["version"] == 1 and metrics["stride"] == 8 and metrics["bits_per_byte"] > 0
    assert metrics["word_perplexity"] > metrics["byte_perplexity"] > 1

    # Bad input: a clear error, exit code 1, nothing registered.
    for args, message in (
        (["generate", "--model", "models:/gpt/99", "--prompt", "x"], "not found in the registry"),
        (["generate", "--model", "models:/gpt", "--prompt", "x"], "name a registered model as"),
        (["generate", "--model", "models:/gpt/1", "--prompt", "the quick brown fox " * 10], "the model's context is 16"),
        (["evaluate", "--model", "models:/gpt/1", "--data", str(tmp_path / "missing.txt")], "missing.txt"),
    ):
        assert main([args[0], *base, *args[1:]]) == 1, args
        assert message in capsys.readouterr().err, args
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["evaluate", *base, "--model", "models:/gpt/1", "--data", str(empty)]) == 1
    assert "empty.txt" in capsys.readouterr().err
    assert len(MlflowClient().search_model_versions("name = 'gpt'")) == 1


def test_llmpipe_evaluate_an_ensemble_of_registered_models(store, model_files, tmp_path, capsys):
    from flows.cli import main

    register(model_files, "k1", 2.0)
    model_file, tokenizer_file = model_files
    torch.manual_seed(1)
    other = GPT(TransformerConfig(vocab_size=300, block_size=16, n_layer=1, n_head=2, n_embd=16))
    torch.save({"config": other.config.to_dict(), "state_dict": other.state_dict()}, tmp_path / "other.pt")
    register((tmp_path / "other.pt", tokenizer_file), "k2", 2.0)
    base = ["--config", "configs/tiny.yaml", "--set", f"project.data_root={tmp_path / 'data'}",
            "--set", "project.mlflow_experiment=registry"]
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 20)
    assert main(["evaluate", *base, "--model", "models:/gpt/1", "--model", "models:/gpt/2", "--data", str(text)]) == 0
    result = json.loads(capsys.readouterr().out)
    members = [m["bits_per_byte"] for m in result["members"].values()]
    assert result["ensemble"]["bits_per_byte"] <= sum(members) / 2 + 1e-4
    assert result["ensemble_beats_best_member"] == (result["ensemble"]["bits_per_byte"] < min(members))

    from tokenizers import ByteLevelBPETokenizer

    different = ByteLevelBPETokenizer()
    different.train_from_iterator(["lorem ipsum dolor sit amet"] * 50, vocab_size=300, special_tokens=["<|endoftext|>"])
    (tmp_path / "tok2").mkdir()
    different.save(str(tmp_path / "tok2" / "tokenizer.json"))
    register((model_file, tmp_path / "tok2" / "tokenizer.json"), "k3", 2.0)
    assert main(["evaluate", *base, "--model", "models:/gpt/1", "--model", "models:/gpt/3", "--data", str(text)]) == 1
    assert "do not share one tokenizer" in capsys.readouterr().err


def test_a_bert_is_registered_with_its_family_and_fills_masks(store, tmp_path):
    """The registered version says its family; the served pyfunc fills [MASK] (loaded back from the registry)."""
    from tokenizers import BertWordPieceTokenizer

    from llm_core.models import BERT

    tokenizer = BertWordPieceTokenizer()
    tokenizer.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 50, vocab_size=120)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    model = BERT(TransformerConfig(vocab_size=tokenizer.get_vocab_size(), family="bert", block_size=16, n_layer=1,
                                   n_head=2, n_embd=16))
    torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict()}, tmp_path / "model.pt")
    with mlflow.start_run():
        version, _ = registry.register_model("bert", "kb", tmp_path / "model.pt", tmp_path / "tokenizer.json",
                                             {"val_loss": 3.0})
    assert MlflowClient().get_model_version("bert", str(version)).tags[registry.FAMILY_TAG] == "bert"
    served = mlflow.pyfunc.load_model(f"models:/bert/{version}")
    (answer,) = served.predict(["the quick [MASK] fox"])
    assert answer.startswith("the quick") and "[MASK]" not in answer
