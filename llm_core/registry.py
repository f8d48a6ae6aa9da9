"""The MLflow model registry: one version per trained model, champion and challenger aliases.

A trained model output is registered once (a rerun finds the version tagged with its output
key). Its version carries the evaluation metrics and the lineage (the output key of every
stage that produced it) as tags. Then model selection, as MLflow's aliases are meant for:
the new version takes the ``champion`` alias if it beats the current champion on the
configured metric (bits per byte by default: tokenizer-independent), else it gets the
``challenger`` alias; the previous champion keeps its version, so a rollback is moving the
alias back (``MlflowClient().set_registered_model_alias(name, "champion", version)``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from llm_core.errors import PipelineError
from llm_core.tokenizer.families import HF_CONFIG_FILE
from llm_core.tokenizer.train import EOT_TOKEN

MODEL_KEY_TAG = "llmpipe.model_key"
FAMILY_TAG = "llmpipe.family"  # gpt, bert or t5: what the served model does with a prompt
MODELS_SCHEME = "models:/"
CHAMPION, CHALLENGER = "champion", "challenger"
SELECTION_TAG = "selection.decision"


def register_model(model_name: str, model_key: str, model_file: Path, tokenizer_file: Path,
                   metrics: dict[str, Any], lineage: dict[str, str] | None = None) -> tuple[int, bool]:
    """Log the model to the active (pipeline) run as a text-in, text-out pyfunc
    (:mod:`llm_core.serving`) and register it, unless this model output is already registered.

    Returns the version and whether it was newly registered."""
    client = MlflowClient()
    existing = client.search_model_versions(f"name = '{model_name}' and tags.`{MODEL_KEY_TAG}` = '{model_key}'")
    if existing:
        return int(existing[0].version), False

    from importlib.metadata import version as installed

    import torch

    from llm_core import serving

    family = torch.load(model_file, map_location="cpu", weights_only=True)["config"].get("family", "gpt")

    artifacts = {"model": str(model_file), "tokenizer": str(tokenizer_file)}
    hf_config = Path(tokenizer_file).with_name(HF_CONFIG_FILE)  # the special tokens' roles (end of text)
    if hf_config.is_file():
        artifacts["tokenizer_config"] = str(hf_config)
    info = mlflow.pyfunc.log_model(
        name="model", python_model=str(Path(serving.__file__).with_name("serving_model.py")),
        artifacts=artifacts,
        signature=serving.signature(), input_example=[serving.INPUT_EXAMPLES[family]],
        # Listing the requirements saves MLflow inferring them; the code of llm_core it needs
        # (the model class, the generator) travels with the model.
        pip_requirements=[f"{d}=={installed(d).split('+')[0]}" for d in ("torch", "tokenizers", "numpy")],
        infer_code_paths=True,
        metadata={"model_key": model_key, "family": family},
    )
    version = mlflow.register_model(info.model_uri, model_name, tags={MODEL_KEY_TAG: model_key, FAMILY_TAG: family})
    for name, value in {**metrics, **{f"lineage.{k}": v for k, v in (lineage or {}).items()}}.items():
        client.set_model_version_tag(model_name, version.version, name, str(value))
    return int(version.version), True


@dataclass(frozen=True)
class Selection:
    """What model selection decided for one version, with both scores."""

    version: int
    metric: str
    score: float
    decision: str  # "first champion", "promoted", "challenger", "already champion", or as recorded earlier
    champion_before: int | None
    champion_score_before: float | None

    @property
    def champion(self) -> int:
        return self.version if self.decision in ("first champion", "promoted", "already champion") \
            else self.champion_before


def select_champion(model_name: str, version: int, metric: str, higher_is_better: bool = False) -> Selection:
    """Give ``version`` the champion alias if it beats the current champion on ``metric`` (a
    version tag), else the challenger alias. Deciding twice for one version changes nothing:
    the first decision (a version tag) is returned."""
    client = MlflowClient()
    mine = client.get_model_version(model_name, str(version))
    score = _score(mine.tags, metric, model_name, version)
    current = _alias_version(client, model_name, CHAMPION)
    if SELECTION_TAG in mine.tags:  # decided by an earlier run
        before = mine.tags.get("selection.champion_before")
        return Selection(version, metric, score, "already champion" if current == version else mine.tags[SELECTION_TAG],
                         int(before) if before else None, _float(mine.tags.get("selection.champion_score_before")))
    if current is None:
        decision, before_score = "first champion", None
    else:
        before_score = _score(client.get_model_version(model_name, str(current)).tags, metric, model_name, current)
        better = score > before_score if higher_is_better else score < before_score
        decision = "promoted" if better else "challenger"
    if decision == "challenger":
        client.set_registered_model_alias(model_name, CHALLENGER, str(version))
    else:
        client.set_registered_model_alias(model_name, CHAMPION, str(version))
        if _alias_version(client, model_name, CHALLENGER) == version:
            client.delete_registered_model_alias(model_name, CHALLENGER)
    selection = Selection(version, metric, score, decision, current, before_score)
    for name, value in {SELECTION_TAG: decision, "selection.metric": metric,
                        "selection.champion_before": current or "",
                        "selection.champion_score_before": "" if before_score is None else before_score}.items():
        client.set_model_version_tag(model_name, str(version), name, str(value))
    return selection


def selection_markdown(model_name: str, selection: Selection, higher_is_better: bool = False) -> str:
    """The decision as a reviewer reads it (the flow's Prefect artifact and MLflow report)."""
    s = selection
    direction = "higher" if higher_is_better else "lower"
    rows = [f"| {model_name} v{s.version} (new) | {s.score:g} |"]
    if s.champion_before is not None:
        rows.append(f"| {model_name} v{s.champion_before} (champion before) | {s.champion_score_before:g} |")
    return "\n".join([
        "# Model selection", "",
        f"Metric: `{s.metric}` ({direction} is better). Decision: **{s.decision}**; "
        f"the champion is now version {s.champion}.", "",
        f"| model | {s.metric} |", "|---|---|", *rows,
    ])


def selection_dict(selection: Selection) -> dict[str, Any]:
    return {**asdict(selection), "champion": selection.champion}


def _alias_version(client: MlflowClient, model_name: str, alias: str) -> int | None:
    try:
        return int(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def _score(tags: dict[str, str], metric: str, model_name: str, version: int) -> float:
    if metric not in tags:
        raise ValueError(f"{model_name} version {version} has no {metric!r} tag to compare on "
                         f"(it has: {', '.join(sorted(tags))})")
    return float(tags[metric])


def _float(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


@dataclass(frozen=True)
class RegisteredFiles:
    """A registered version's files, downloaded: what training, evaluation and generation
    load (plain weights and a tokenizer; no pickle)."""

    uri: str
    name: str
    version: int
    run_id: str
    model_file: Path
    tokenizer_file: Path
    eot_token: str  # its tokenizer's end-of-text token (the GPT family's when the version does not say)


def download_registered(uri: str, dst: Path) -> RegisteredFiles:
    """``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` into ``dst``. A URI of another shape,
    a version that does not exist, or one that is not a model this pipeline registered (no
    weights or no tokenizer among its artifacts): a ``PipelineError`` saying which."""
    name, sep, version = uri[len(MODELS_SCHEME):].partition("/") if uri.startswith(MODELS_SCHEME) else ("", "", "")
    alias = None
    if not sep:
        name, _, alias = name.partition("@")
    if not name or not (version or alias):
        raise PipelineError(f"{uri}: name a registered model as models:/NAME/VERSION or models:/NAME@ALIAS")
    client = MlflowClient()
    try:
        found = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException as exc:
        raise PipelineError(f"{uri}: not found in the registry at {mlflow.get_registry_uri()} "
                            f"({exc.message.splitlines()[0]})") from None
    local = Path(mlflow.artifacts.download_artifacts(f"{MODELS_SCHEME}{name}/{found.version}", dst_path=str(dst)))
    files = _pyfunc_artifacts(local)
    if "model" not in files:
        raise PipelineError(f"{uri} is not a model this pipeline registered (no model weights among its artifacts)")
    if "tokenizer" not in files:
        raise PipelineError(f"{uri} has no tokenizer.json: it was not registered by this pipeline")
    hf_config = files.get("tokenizer_config")
    eot = json.loads(hf_config.read_text()).get("eos_token") if hf_config else None
    return RegisteredFiles(uri, name, int(found.version), found.run_id or "", files["model"], files["tokenizer"],
                           eot if isinstance(eot, str) else EOT_TOKEN)


def _pyfunc_artifacts(model_dir: Path) -> dict[str, Path]:
    """The artifacts :func:`register_model` logged (``model``, ``tokenizer``, ``tokenizer_config``),
    by name, from the downloaded model's ``MLmodel`` file."""
    import yaml

    mlmodel = model_dir / "MLmodel"
    if not mlmodel.is_file():
        return {}
    flavor = (yaml.safe_load(mlmodel.read_text()).get("flavors") or {}).get("python_function") or {}
    return {key: model_dir / spec["path"] for key, spec in (flavor.get("artifacts") or {}).items()
            if (model_dir / spec["path"]).is_file()}
