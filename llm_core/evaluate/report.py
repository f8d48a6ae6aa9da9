"""report.md: the evaluate stage's metrics, per-dataset table, continuation task and samples."""

from __future__ import annotations

from typing import Any

DATASET_COLUMNS = ("bits_per_byte", "word_perplexity", "byte_perplexity", "token_perplexity", "docs", "tokens",
                   "stride")


def render_report(metrics: dict[str, Any], samples: list[dict[str, str]],
                  examples: list[dict[str, str]] | None = None) -> str:
    flat = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    lines = ["# Evaluation report", "", "## Validation split", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in flat.items()]
    datasets = metrics.get("datasets") or {}
    if datasets:
        lines += ["", "## Evaluation sets", "", "| dataset | " + " | ".join(DATASET_COLUMNS) + " |",
                  "|---" * (len(DATASET_COLUMNS) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(str(m.get(c, "")) for c in DATASET_COLUMNS) + " |"
                  for name, m in datasets.items()]
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
    lines += ["", "## Samples", ""]
    for i, s in enumerate(samples, 1):
        lines += [f"**{i}.** _{one_line(s['prompt'])}_ → {one_line(s['completion'])}", ""]
    return "\n".join(lines)


def one_line(text: str) -> str:
    return " ".join(text.split())
