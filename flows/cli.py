"""``llmpipe``: the command line.

    llmpipe run --config FILE [--set key=value ...] [--from STAGE]   the whole pipeline (or from a stage on)
    llmpipe stage NAME --config FILE [--set ...]         up to and including one stage
    llmpipe status --config FILE [--set ...]             each stage's output key, code digest, and whether it exists
    llmpipe gc --config FILE [--apply]                   outputs no recent run uses, leftovers of dead runs
    llmpipe demo --config FILE                           serve the demo site on 127.0.0.1, then run
    llmpipe serve [--file deployments/prefect.yaml]      serve the deployments (schedules, UI runs)
    llmpipe ui [--config FILE]                           Prefect and MLflow UIs on 127.0.0.1 (its data root)
    llmpipe generate --model URI --prompt TEXT           a registered model continues a prompt
    llmpipe evaluate --model URI [--model URI ...] --data FILE   a registered model's (or an ensemble's) metrics on any text
    llmpipe train-node JOB_FILE                          join a multi-node training run (train.nodes) from another machine

Prefect reads its settings when first imported, so commands set the environment from the
config (flows/environment.py) before importing anything of Prefect's.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from flows import model_commands
from flows.environment import prepare_ephemeral_api, setup_environment
from flows.services import MLFLOW_PORT, PREFECT_PORT, demo_site, serve, ui
from llm_core.config import STAGES, PipelineConfig, load_config
from llm_core.errors import ConfigError, PipelineError
from llm_core.preflight import check_services, prefect_api_url

DEFAULT_DEPLOYMENTS = Path("deployments/prefect.yaml")
DEFAULT_CONFIG = Path("configs/tiny.yaml")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def run_pipeline(config: PipelineConfig, stop_after: str = "evaluate", start_at: str = "crawl") -> dict:
    setup_environment(config)
    check_services(config, prefect_api_url())  # before Prefect is imported: a server that is down is named
    prepare_ephemeral_api()
    from flows.pipeline import pipeline

    return pipeline(config=config, stop_after=stop_after, start_at=start_at)


def print_summary(summary: dict, config: PipelineConfig) -> None:
    print("\nPipeline finished.")
    print(f"  {'stage':<10} {'status':<7} {'built in':>8}  output")
    for name, info in summary["stages"].items():
        print(f"  {name:<10} {info['status']:<7} {info['wall_s'] or 0:>7.1f}s  {info['path']}")
    print(f"\nPrefect flow run: {summary['flow_run_name']} ({summary['flow_run_id']})")
    print(f"  UI: `llmpipe ui --config <this config>`, then "
          f"http://127.0.0.1:{PREFECT_PORT}/runs/flow-run/{summary['flow_run_id']}")
    print(f"MLflow run: {summary['mlflow_run_id']} (experiment {config.project.mlflow_experiment!r}, "
          f"store {summary['mlflow_tracking_uri']})")
    print(f"  UI: http://127.0.0.1:{MLFLOW_PORT}/#/experiments (after `llmpipe ui`)")
    if "registered_model" in summary:
        model = summary["registered_model"]
        print(f"Registered model: models:/{model['name']}/{model['version']}"
              f"{'' if model['new'] else ' (already registered by an earlier run)'}")
        selection = model["selection"]
        print(f"Model selection on {selection['metric']}: {selection['decision']}; "
              f"champion: models:/{model['name']}@champion (version {selection['champion']})")
        print(f"Evaluation report: {summary['report']}")


def status(config: PipelineConfig) -> None:
    """Each stage's key as a run started now would compute it (snapshots resolved), before anything runs."""
    from llm_core.stages import plan

    for planned in plan(config.for_run()):
        state = "done" if planned.complete else "missing"
        print(f"{planned.stage:<10} {state:<8} {planned.key}  code {planned.code}  {planned.path}")


def parse_duration(text: str) -> float:
    """``90``, ``30m``, ``12h``, ``7d``, ``2w`` -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"{text!r} is not a duration (e.g. 30m, 12h, 7d)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def gc(config: PipelineConfig, keep_runs: int, older_than: str, tmp_older_than: str, apply: bool) -> None:
    from llm_core.gc import apply_gc, plan_gc

    project = config.for_run().project
    if project.store_url:
        print(f"note: the outputs are in {project.store_url}: gc cleans this machine's copies under "
              f"{project.local_dir}; the store's are kept (expire them with its lifecycle rules)")
    plan = plan_gc(project.local_dir, STAGES, keep_runs=keep_runs, min_age_s=parse_duration(older_than),
                   tmp_min_age_s=parse_duration(tmp_older_than))
    if plan.note:
        print(f"note: {plan.note}")
    print(f"{len(plan.removals)} to remove ({plan.bytes / 2**20:.1f} MiB), {plan.kept_outputs} output(s) kept "
          f"(used by the last {plan.runs_considered} recorded run(s) or newer than {older_than})")
    for removal in plan.removals:
        print(f"  {removal.kind:<7} {removal.bytes / 2**20:>9.1f} MiB  {removal.path}  ({removal.reason})")
    if not apply:
        if plan.removals:
            print("dry run: nothing removed; add --apply to remove these")
        return
    removed, freed = apply_gc(plan)
    skipped = len(plan.removals) - removed
    print(f"removed {removed}, freed {freed / 2**20:.1f} MiB"
          + (f"; kept {skipped} that came into use since the plan" if skipped else ""))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llmpipe", description="Raw web pages to an evaluated, registered model.")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(cmd: argparse.ArgumentParser, default: Path | None = None) -> argparse.ArgumentParser:
        cmd.add_argument("--config", required=default is None, default=default, type=Path,
                         help=f"pipeline YAML, e.g. {DEFAULT_CONFIG}")
        cmd.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a config value by dotted key, e.g. tokenizer.vocab_size=4096")
        return cmd

    run_cmd = with_config(sub.add_parser("run", help="run the whole pipeline"))
    run_cmd.add_argument("--from", dest="start_at", choices=STAGES, default="crawl",
                         help="start at this stage: the ones before it must be built already (read, not rebuilt)")
    stage = with_config(sub.add_parser("stage", help="run the pipeline up to and including one stage"))
    stage.add_argument("name", choices=STAGES)
    with_config(sub.add_parser("status", help="each stage's output key and whether it exists"))
    gc_cmd = with_config(sub.add_parser("gc", help="remove outputs no recent run uses (dry run unless --apply)"))
    gc_cmd.add_argument("--keep-runs", type=int, default=5, help="keep what the last N recorded runs used (5)")
    gc_cmd.add_argument("--older-than", default="1h", help="only remove outputs built longer ago than this (1h)")
    gc_cmd.add_argument("--tmp-older-than", default="1d",
                        help="remove unfinished builds of other hosts untouched this long (1d)")
    gc_cmd.add_argument("--apply", action="store_true", help="remove; without it, only list")
    with_config(sub.add_parser("demo", help="serve the demo site (pydoc) on the seed's port and run the pipeline"))
    serve_cmd = sub.add_parser("serve", help="serve the deployments in deployments/prefect.yaml")
    serve_cmd.add_argument("--file", type=Path, default=DEFAULT_DEPLOYMENTS)
    node = sub.add_parser("train-node", help="run this machine's training processes of a multi-node run")
    node.add_argument("job", type=Path, help="the job.json the train stage wrote (its path in the log)")
    ui_cmd = with_config(sub.add_parser("ui", help="start the Prefect and MLflow UIs on 127.0.0.1"),
                         default=DEFAULT_CONFIG)
    ui_cmd.add_argument("--prefect-port", type=int, default=PREFECT_PORT)
    ui_cmd.add_argument("--mlflow-port", type=int, default=MLFLOW_PORT)
    gen = with_config(sub.add_parser("generate", help="a registered model continues a prompt"),
                      default=DEFAULT_CONFIG)
    gen.add_argument("--model", required=True, help="models:/NAME/VERSION or models:/NAME@ALIAS")
    gen.add_argument("--prompt", required=True)
    # Unset: the served model's defaults (llm_core.serving.DEFAULT_PARAMS: 48 tokens, 0.8, 50, 1.0, 1337).
    gen.add_argument("--max-new-tokens", type=int)
    gen.add_argument("--temperature", type=float)
    gen.add_argument("--top-k", type=int)
    gen.add_argument("--top-p", type=float)
    gen.add_argument("--seed", type=int)
    ev = with_config(sub.add_parser("evaluate", help="a registered model's metrics on a text, JSONL or Parquet file"),
                     default=DEFAULT_CONFIG)
    ev.add_argument("--model", required=True, action="append", dest="models",
                    help="models:/NAME/VERSION or models:/NAME@ALIAS; several: each and their ensemble")
    ev.add_argument("--data", required=True, type=Path)
    ev.add_argument("--stride", type=int, default=None, help="tokens newly scored per window (default: the context)")
    ev.add_argument("--batch-size", type=int, default=8)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "serve":
            serve(args.file)
            return 0
        if args.command == "train-node":
            from llm_core.train.launch import join_as_node

            return join_as_node(args.job)
        config = load_config(args.config, args.overrides)
        if args.command == "status":
            status(config)
        elif args.command == "gc":
            gc(config, args.keep_runs, args.older_than, args.tmp_older_than, args.apply)
        elif args.command == "generate":
            params = {name: value for name, value in (("max_new_tokens", args.max_new_tokens),
                      ("temperature", args.temperature), ("top_k", args.top_k), ("top_p", args.top_p),
                      ("seed", args.seed)) if value is not None}
            print(args.prompt + model_commands.generate(config, args.model, args.prompt, params))
        elif args.command == "evaluate":
            metrics = model_commands.evaluate_file(config, args.models, args.data, args.stride, args.batch_size)
            print(json.dumps(metrics, indent=2))
        elif args.command == "ui":
            ui(config, args.prefect_port, args.mlflow_port)
        elif args.command == "demo":
            if not config.crawl.seeds:
                raise PipelineError("[crawl] no seed URLs: set crawl.seeds in the config")
            with demo_site(config.crawl.seeds[0]):
                summary = run_pipeline(config)
            print_summary(summary, config)
        else:
            summary = run_pipeline(config, stop_after=args.name if args.command == "stage" else "evaluate",
                                   start_at=getattr(args, "start_at", "crawl"))
            print_summary(summary, config)
    except PipelineError as exc:
        print(f"llmpipe: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
