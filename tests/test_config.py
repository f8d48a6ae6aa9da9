from pathlib import Path

import pytest
import yaml

from llm_core.config import PipelineConfig, apply_overrides, load_config, parse_config
from llm_core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_tiny_config_parses():
    config = load_config(REPO / "configs" / "tiny.yaml")
    assert config.crawl.seeds == ["http://127.0.0.1:8765/"]
    assert config.train.zero_stage == 2


def test_typo_names_the_key():
    with pytest.raises(ConfigError, match=r"tokenizer\.vocab_sise"):
        parse_config({"tokenizer": {"vocab_sise": 4096}})


def test_bad_value_names_the_key_and_reason():
    with pytest.raises(ConfigError, match=r"train\.zero_stage.*less than or equal to 3"):
        parse_config({"train": {"zero_stage": 5}})
    with pytest.raises(ConfigError, match=r"crawl.*not an http"):
        parse_config({"crawl": {"seeds": ["ftp://x"]}})
    with pytest.raises(ConfigError, match=r"n_embd"):
        parse_config({"train": {"model": {"n_embd": 130, "n_head": 4}}})


def test_overrides_parse_yaml_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("crawl:\n  seeds: ['http://127.0.0.1:1/']\n")
    config = load_config(path, ["tokenizer.vocab_size=4096", "filter.language.languages=[en, de]", "dedupe.near=false"])
    assert config.tokenizer.vocab_size == 4096
    assert config.filter.language.languages == ["en", "de"]
    assert config.dedupe.near is False


def test_malformed_override_and_files(tmp_path):
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides({}, ["tokenizer.vocab_size"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("crawl: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_deployment_parameters_are_the_tiny_config_refreshed_daily():
    """deployments/prefect.yaml repeats configs/tiny.yaml as the deployment's default parameters,
    with a daily crawl refresh so that each scheduled run fetches pages anew."""
    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    (deployment,) = [d for d in spec["deployments"] if d["name"] == "pipeline"]
    assert PipelineConfig.model_validate(deployment["parameters"]["config"]) == load_config(
        REPO / "configs" / "tiny.yaml", ["crawl.refresh=daily"])
    assert deployment["schedules"][0]["cron"] == "0 3 * * *"


def test_data_and_train_deployments_split_the_pipeline_on_one_config():
    """data builds crawl -> filter, train reads them and builds tokenizer -> evaluate; same config
    (one YAML anchor), each scheduled, one run at a time, on the process work pool."""
    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    by_name = {d["name"]: d for d in spec["deployments"]}
    assert set(by_name) == {"pipeline", "data", "train"}
    assert by_name["data"]["parameters"]["stop_after"] == "filter"
    assert (by_name["train"]["parameters"]["start_at"], by_name["train"]["parameters"]["stop_after"]) == \
        ("tokenizer", "evaluate")
    for d in by_name.values():
        assert d["parameters"]["config"] == by_name["pipeline"]["parameters"]["config"]
        assert d["schedules"] and d["concurrency_limit"] == 1 and d["work_pool"]["name"] == "llmpipe-process"
    assert by_name["data"]["schedules"][0]["cron"] < by_name["train"]["schedules"][0]["cron"], "data first"


def test_a_run_config_pins_the_snapshot_and_the_data_root(tmp_path, monkeypatch):
    from datetime import datetime, timezone

    monkeypatch.setenv("LLMPIPE_BASE_DIR", str(tmp_path))
    monday = datetime(2026, 11, 23, 3, 0, tzinfo=timezone.utc)
    daily = parse_config({"crawl": {"refresh": "daily"}})
    run = daily.for_run(monday)
    assert run.project.data_root == tmp_path / "data"
    assert (run.crawl.refresh, run.crawl.snapshot) == ("never", "2026-11-23")
    assert daily.for_run(monday.replace(day=24)).crawl.snapshot == "2026-11-24"
    assert parse_config({"crawl": {"refresh": "weekly"}}).for_run(monday).crawl.snapshot == "2026-W48"
    assert parse_config({"crawl": {"refresh": "monthly"}}).for_run(monday).crawl.snapshot == "2026-11"
    pinned = parse_config({"crawl": {"refresh": "daily", "snapshot": "2026-11-01"}})
    assert pinned.for_run(monday).crawl.snapshot == "2026-11-01", "an explicit snapshot wins"
    assert parse_config({}).for_run(monday).crawl.snapshot is None, "refresh: never keeps reusing"
    with pytest.raises(ConfigError, match="crawl.refresh"):
        parse_config({"crawl": {"refresh": "hourly"}})


def test_inconsistent_ranges_are_rejected():
    with pytest.raises(ConfigError, match=r"train: .*warmup_steps \(50\) exceeds max_steps \(10\)"):
        parse_config({"train": {"warmup_steps": 50, "max_steps": 10}})
    with pytest.raises(ConfigError, match=r"filter\.gopher_quality: .*min_mean_word_length \(9\.0\) exceeds"):
        parse_config({"filter": {"gopher_quality": {"min_mean_word_length": 9, "max_mean_word_length": 3}}})
    with pytest.raises(ConfigError, match=r"offload_optimizer needs zero_stage"):
        parse_config({"train": {"zero_stage": 0, "offload_optimizer": True}})


def test_setting_one_task_option_keeps_the_stage_defaults():
    tasks = parse_config({"tasks": {"train": {"timeout_s": 7200}, "crawl": {"retries": 0}}}).tasks
    assert (tasks.train.retries, tasks.train.timeout_s) == (1, 7200)
    assert tasks.crawl.retries == 0 and tasks.filter.retries == 2 and tasks.dedupe.retries == 0
    with pytest.raises(ConfigError, match=r"tasks\.train\.timeout_s"):
        parse_config({"tasks": {"train": {"timeout_s": -1}}})
