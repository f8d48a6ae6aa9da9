"""Keys follow the code: a stage's key changes when the code that builds its output changes."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llm_core.config import PipelineConfig
from llm_core.stages import STAGES_BY_NAME

REPO = Path(__file__).resolve().parents[1]
PRINT_KEYS = ("import json, llm_core; from llm_core.config import load_config; from llm_core.stages import plan; "
              "assert llm_core.__file__.startswith({root!r}), llm_core.__file__; "
              "print(json.dumps({{p.stage: p.key for p in plan(load_config('configs/tiny.yaml').for_run())}}))")


def keys_of_copy(tmp_path: Path, name: str, edit=None) -> dict[str, str]:
    """The stage keys computed by a copy of the library, after ``edit(copy_root)``."""
    root = tmp_path / name
    shutil.copytree(REPO / "llm_core", root / "llm_core", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "configs", root / "configs")
    if edit:
        edit(root)
    result = subprocess.run([sys.executable, "-c", PRINT_KEYS.format(root=str(root))], cwd=root, text=True,
                            capture_output=True, env={**os.environ, "PYTHONPATH": str(root),
                                                      "LLMPIPE_BASE_DIR": str(tmp_path)}, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def append(relative: str, text: str):
    def edit(root: Path) -> None:
        path = root / relative
        path.write_text(path.read_text() + text)
    return edit


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [stage for stage in before if before[stage] != after[stage]]


def test_editing_a_stage_changes_its_key_and_those_downstream_only(tmp_path):
    original = keys_of_copy(tmp_path, "original")
    assert keys_of_copy(tmp_path, "same") == original, "same code and config: same keys wherever it lives"

    filter_rule = keys_of_copy(tmp_path, "filter-edit", append("llm_core/filters/rules/gopher_quality.py", "\nMAX_RATIO = 0.5\n"))
    assert changed(original, filter_rule) == ["filter", "tokenizer", "train", "evaluate"]

    worker = keys_of_copy(tmp_path, "train-edit", append("llm_core/train/worker.py", "\nSEED_OFFSET = 1\n"))
    assert changed(original, worker) == ["train", "evaluate"]

    shared = keys_of_copy(tmp_path, "documents-edit", append("llm_core/documents.py", "\nPART_ROWS = 10\n"))
    assert changed(original, shared) == list(original), "every stage reads or writes documents"


def test_comments_docstrings_and_layout_do_not_change_keys(tmp_path):
    def reword(root: Path) -> None:
        path = root / "llm_core" / "tokenizer" / "train.py"
        source = path.read_text()
        source = source.replace('"""Train a byte-level BPE tokenizer', '"""Train (reworded) a byte-level BPE tokenizer', 1)
        path.write_text("# a new comment\n\n" + source.replace("\n\n\ndef ", "\n\n\n# spacing\ndef ", 1))

    assert keys_of_copy(tmp_path, "original") == keys_of_copy(tmp_path, "reworded", reword)


def test_fingerprint_names_modules_libraries_and_model_files():
    crawl, filter_, train = (STAGES_BY_NAME[s].fingerprint() for s in ("crawl", "filter", "train"))
    assert "llm_core.crawl.crawler" in crawl["modules"]
    assert not any(m.startswith(("llm_core.train", "llm_core.tokenizer", "llm_core.filters")) for m in crawl["modules"])
    assert "llm_core.errors" not in crawl["modules"], "orchestration modules do not shape outputs"
    assert set(crawl["libraries"]) >= {"trafilatura", "courlan", "protego", "warcio"}
    assert "+" not in train["libraries"]["torch"], "a CPU and a CUDA build of one torch version agree"
    assert all(v != "absent" for s in (crawl, filter_, train) for v in s["libraries"].values())
    assert len(filter_["files"]["lid.176.ftz"]) == 16, "the language-ID model's hash is in the filter's key"


def test_a_manual_bump_still_changes_the_key():
    config = PipelineConfig()
    stage = STAGES_BY_NAME["crawl"]
    bumped = dataclasses.replace(stage, code_version="2")
    assert stage.key(config, {}) != bumped.key(config, {})


@pytest.mark.parametrize("stage", list(STAGES_BY_NAME))
def test_each_stage_declares_installed_libraries(stage):
    assert all(v != "absent" for v in STAGES_BY_NAME[stage].fingerprint()["libraries"].values())


DIGEST_OF_ALL_MODULES = """
import importlib.util, pathlib, sys
spec = importlib.util.spec_from_file_location("fp", "llm_core/fingerprint.py")
fp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fp)
names = sorted(p.with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")
               for p in pathlib.Path("llm_core").rglob("*.py"))
print(fp.source_digest(names))
"""


def other_pythons() -> list[str]:
    """Interpreters of other minor versions on this machine (pyenv's, or on PATH)."""
    import glob

    found = {}
    for candidate in [*glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3")),
                      *(shutil.which(f"python3.{minor}") or "" for minor in (12, 13, 14))]:
        if not candidate:
            continue
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                               text=True)
        if probe.returncode == 0 and probe.stdout.strip() != str(sys.version_info[:2]):
            found.setdefault(probe.stdout.strip(), candidate)
    return list(found.values())


def test_keys_are_the_same_on_other_python_versions():
    """``pyproject.toml`` admits 3.11 and 3.12: their syntax trees print differently, the digest must not."""
    pythons = other_pythons()
    if not pythons:
        pytest.skip("no other Python 3.12+ interpreter on this machine")
    digests = {python: subprocess.run([python, "-c", DIGEST_OF_ALL_MODULES], cwd=REPO, capture_output=True,
                                      text=True, check=True).stdout.strip() for python in [sys.executable, *pythons]}
    assert len(set(digests.values())) == 1, digests
