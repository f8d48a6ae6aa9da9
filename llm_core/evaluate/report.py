"""The evaluate stage's report: ``report.md`` (metrics, per-dataset table, continuation task,
samples, the training curves), the same as ``report.html`` for a reviewer's browser, and
``loss_curves.png`` (training and validation loss from the train stage's history)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LOSS_CURVES_PNG = "loss_curves.png"

DATASET_COLUMNS = ("bits_per_byte", "word_perplexity", "byte_perplexity", "token_perplexity", "docs", "tokens",
                   "stride")


def render_report(metrics: dict[str, Any], samples: list[dict[str, str]],
                  examples: list[dict[str, str]] | None = None, curves: bool = False) -> str:
    flat = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    lines = ["# Evaluation report", "", "## Validation split", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in flat.items()]
    datasets = metrics.get("datasets") or {}
    if datasets:
        lines += ["", "## Evaluation sets", "", "| dataset | " + " | ".join(DATASET_COLUMNS) + " |",
                  "|---" * (len(DATASET_COLUMNS) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(str(m.get(c, "")) for c in DATASET_COLUMNS) + " |"
                  for name, m in datasets.items()]
    choices = metrics.get("choice") or {}
    if choices:
        lines += ["", "## Multiple-choice tasks", "", "| task | acc | acc_norm | docs |", "|---|---|---|---|"]
        lines += [f"| {n} | {m['acc']:.4f} | {m['acc_norm']:.4f} | {m['docs']} |" for n, m in choices.items()]
    task = metrics.get("continuation")
    if task:
        lines += ["", "## Continuation", ""]
        if task.get("passages"):
            lines += [f"Greedy continuations of {task['passages']} passages of {task.get('source')} "
                      f"({task['prompt_tokens']}-token prompts).", "",
                      "| metric | value |", "|---|---|"]
            lines += [f"| {k} | {task[k]} |" for k in ("bleu", "rouge1", "rouge2", "rougeL")]
            lines += ["", f"BLEU signature: `{task['bleu_signature']}`", ""]
            for i, e in enumerate(examples or [], 1):
                lines += [f"**{i}.** _{one_line(e['prompt'])}_ → {one_line(e['continuation'])}  ",
                          f"reference: {one_line(e['reference'])}", ""]
        else:
            lines += [f"No passage long enough in {task.get('source')}.", ""]
    if curves:
        lines += ["", "## Training", "", f"![training and validation loss]({LOSS_CURVES_PNG})", ""]
    lines += ["", "## Samples", ""]
    for i, s in enumerate(samples, 1):
        lines += [f"**{i}.** _{one_line(s['prompt'])}_ → {one_line(s['completion'])}", ""]
    return "\n".join(lines)


def one_line(text: str) -> str:
    return " ".join(text.split())


def loss_curves(history_file: Path, path: Path) -> bool:
    """Plot the training loss (and the validation loss, when the run validated) per step from
    the train stage's ``metrics.jsonl``; False when there is no history to plot."""
    records = [json.loads(line) for line in history_file.read_text().splitlines() if line] \
        if history_file.is_file() else []
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    if not train:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(*zip(*train), label="training loss")
    if val:
        ax.plot(*zip(*val), marker="o", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats per token)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def render_html(report_markdown: str) -> str:
    """``report.md`` as a standalone page (Python-Markdown with tables; the curves' PNG beside it)."""
    import markdown

    body = markdown.markdown(report_markdown, extensions=["tables"])
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Evaluation report</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.2em .6em}</style></head>\n<body>\n" + body + "\n</body></html>\n")
