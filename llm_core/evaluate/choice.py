"""Multiple-choice tasks scored by log-likelihood, as lm-evaluation-harness scores them.

``loglikelihoods`` is lm-eval's ``LM.loglikelihood`` (``TemplateLM.loglikelihood`` and
``HFLM._loglikelihood_tokens`` in lm-eval 0.4.x) for this project's GPT and tokenizer:

- a request is ``(context, continuation)``; the result is the summed log-probability of the
  continuation's tokens given the context, and whether each of them was the most likely
  token (greedy decoding would have produced the continuation);
- spaces that end the context are moved to the start of the continuation, then
  ``context + continuation`` is encoded whole and the continuation's tokens are those after
  the context's own encoding (``TemplateLM._encode_pair``);
- an empty context is conditioned on end-of-text (lm-eval's ``prefix_token_id``); when the
  continuation itself starts with end-of-text, that token is the context instead;
- a context and continuation longer than the model's ``block_size + 1`` tokens lose tokens
  from the left of the context: the model's input is ``(context + continuation)[-(block_size
  + 1):][:-1]``. A continuation of more than ``block_size`` tokens is an error, as there.

A task file is JSON lines, one document per line: ``{"query": str, "choices": [str, ...],
"gold": int}``, the shape of lm-eval's ``MultipleChoiceTask`` documents, scored as that class
and a YAML task with ``output_type: multiple_choice`` score them zero-shot: each choice is the
continuation ``" " + choice`` (lm-eval's default ``target_delimiter``) of the query, and

- ``acc``: the share of documents whose most likely choice (summed log-likelihood) is the gold one;
- ``acc_norm``: the same with each log-likelihood divided by the length of the choice string in
  characters (lm-eval's ``completion_len = np.array([float(len(i)) for i in choices])``, in
  ``ConfigurableTask.process_results`` and ``MultipleChoiceTask.process_results``: characters of
  the choice, without the delimiter; not bytes, which its ``acc_bytes`` uses).

Ties go to the first choice (``np.argmax``), as in lm-eval.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tokenizers import Tokenizer
from torch.nn import functional as F

from llm_core.errors import StageError
from llm_core.evaluate.datasets import STAGE, json_lines, read_utf8

TARGET_DELIMITER = " "  # lm-eval's default target_delimiter, put before each choice


@dataclass(frozen=True)
class ChoiceDoc:
    query: str
    choices: tuple[str, ...]
    gold: int


def encode_requests(tokenizer: Tokenizer, requests: Sequence[tuple[str, str]],
                    eot_id: int) -> list[tuple[list[int], list[int]]]:
    """(context tokens, continuation tokens) of each request, as lm-eval's ``TemplateLM`` splits them."""
    texts, pairs = [], []
    for context, continuation in requests:
        if context == "":
            texts += [continuation]
        else:
            spaces = len(context) - len(context.rstrip())
            if spaces:
                context, continuation = context[:-spaces], context[-spaces:] + continuation
            texts += [context + continuation, context]
        pairs.append((context, continuation))
    encoded = iter([e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)])
    out = []
    for (context, continuation), original in zip(pairs, requests):
        if context == "":
            tokens = next(encoded)
            if not tokens:
                raise ValueError(f"request {original!r}: an empty context and an empty continuation")
            pair = ([eot_id], tokens) if tokens[0] != eot_id else (tokens[:1], tokens[1:])
        else:
            whole, context_tokens = next(encoded), next(encoded)
            pair = (context_tokens, whole[len(context_tokens):])
        if not pair[1]:
            raise ValueError(f"request {original!r}: the continuation has no tokens of its own")
        out.append(pair)
    return out


@torch.no_grad()
def token_loglikelihoods(model, pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
                         batch_size: int = 8) -> list[tuple[float, bool]]:
    """``loglikelihoods`` on token ids. Requests are run longest first (ties by their tokens),
    right-padded to the longest of their batch (causal attention: padding after a position
    does not change it), so a request's figure depends only on the set of requests."""
    max_len = model.config.block_size
    device = next(model.parameters()).device
    inputs = []
    for context, continuation in pairs:
        if not continuation:
            raise ValueError("a request without continuation tokens")
        if len(continuation) > max_len:
            raise ValueError(f"a continuation of {len(continuation)} tokens exceeds the model's block_size={max_len}")
        inputs.append(([*context, *continuation][-(max_len + 1):][:-1], [int(t) for t in continuation]))
    order = sorted(range(len(inputs)), key=lambda i: (-len(inputs[i][0]), inputs[i][0], inputs[i][1]))
    results: list[tuple[float, bool] | None] = [None] * len(inputs)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = len(inputs[chunk[0]][0])
        batch = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            tokens = inputs[i][0]
            batch[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        logits, _ = model(batch.to(device))
        logprobs = F.log_softmax(logits.float(), dim=-1)
        for row, i in enumerate(chunk):
            length, continuation = len(inputs[i][0]), inputs[i][1]
            scored = logprobs[row, length - len(continuation) : length]  # (continuation, vocab)
            targets = torch.tensor(continuation, dtype=torch.long, device=device)
            total = scored.gather(1, targets[:, None]).double().sum().item()
            greedy = bool((scored.argmax(dim=-1) == targets).all().item())
            results[i] = (float(total), greedy)
    return results  # type: ignore[return-value]


def loglikelihoods(model, tokenizer: Tokenizer, requests: Sequence[tuple[str, str]], eot_id: int,
                   batch_size: int = 8) -> list[tuple[float, bool]]:
    """lm-eval's ``loglikelihood``: per ``(context, continuation)``, the summed log-probability (nats)
    of the continuation's tokens and whether each was the model's most likely token."""
    return token_loglikelihoods(model, encode_requests(tokenizer, requests, eot_id), batch_size)


def load_choice_task(path: str | Path) -> list[ChoiceDoc]:
    """The task's documents, in file order; a file that is missing, empty, not UTF-8 JSON lines
    or has a malformed document is a ``StageError`` naming the file and line."""
    path = Path(path).expanduser()
    where = f"choice task {path}"
    text = read_utf8(path, where)
    docs = [parse_doc(row, f"{where} line {number}") for number, row in json_lines(text, where)]
    if not docs:
        raise StageError(STAGE, f"{where} is empty: it has no documents")
    return docs


def parse_doc(row, where: str) -> ChoiceDoc:
    if not isinstance(row, dict):
        raise StageError(STAGE, f'{where} is not a JSON object {{"query": ..., "choices": [...], "gold": ...}}')
    query, choices, gold = row.get("query"), row.get("choices"), row.get("gold")
    if not isinstance(query, str):
        raise StageError(STAGE, f'{where}: "query" must be a string')
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise StageError(STAGE, f'{where}: "choices" must be a list of strings')
    if len(choices) < 2:
        raise StageError(STAGE, f'{where}: a multiple-choice document needs at least 2 choices, it has {len(choices)}')
    if isinstance(gold, bool) or not isinstance(gold, int):
        raise StageError(STAGE, f'{where}: "gold" must be the index of the right choice (an integer)')
    if not 0 <= gold < len(choices):
        raise StageError(STAGE, f'{where}: "gold" is {gold}, out of range for {len(choices)} choices '
                         f'(0 to {len(choices) - 1})')
    return ChoiceDoc(query, tuple(choices), gold)


def choice_requests(docs: Sequence[ChoiceDoc]) -> list[tuple[str, str]]:
    """The (context, continuation) requests of the documents, choice by choice, document by document."""
    return [(doc.query, TARGET_DELIMITER + choice) for doc in docs for choice in doc.choices]


def choice_metrics(docs: Sequence[ChoiceDoc], lls: Sequence[float]) -> dict[str, float | int]:
    """``acc`` and ``acc_norm`` (see the module docstring) from the requests' log-likelihoods."""
    acc = acc_norm = 0
    at = 0
    for doc in docs:
        scores = np.array(lls[at : at + len(doc.choices)], dtype=np.float64)
        at += len(doc.choices)
        lengths = np.array([float(len(c)) for c in doc.choices])
        acc += int(np.argmax(scores) == doc.gold)
        with np.errstate(divide="ignore", invalid="ignore"):  # an empty choice: lm-eval divides by 0 too
            acc_norm += int(np.argmax(scores / lengths) == doc.gold)
    return {"acc": acc / len(docs), "acc_norm": acc_norm / len(docs), "docs": len(docs)}


def score_choice_docs(model, tokenizer: Tokenizer, docs: Sequence[ChoiceDoc], eot_id: int, batch_size: int = 8,
                      where: str = "choice task") -> dict[str, float | int]:
    """``{"acc", "acc_norm", "docs"}`` of loaded documents; a request the model cannot score (a choice
    longer than its context, a choice without tokens of its own) is a ``StageError`` naming ``where``."""
    try:
        lls = loglikelihoods(model, tokenizer, choice_requests(docs), eot_id, batch_size)
    except ValueError as error:
        raise StageError(STAGE, f"{where}: {error}") from None
    return choice_metrics(docs, [ll for ll, _ in lls])


def score_choice_task(model, tokenizer: Tokenizer, path: str | Path, eot_id: int,
                      batch_size: int = 8) -> dict[str, float | int]:
    """``{"acc", "acc_norm", "docs"}`` of the task file at ``path`` (JSON lines, see the module docstring)."""
    return score_choice_docs(model, tokenizer, load_choice_task(path), eot_id, batch_size,
                             where=f"choice task {Path(path).expanduser()}")
