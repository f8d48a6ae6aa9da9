"""What each family learns, as batches drawn from the tokenizer stage's packed shards.

- ``CausalLM`` (GPT): windows of ``block_size + 1`` tokens, inputs and next tokens.
- ``MaskedLM`` (BERT): ``[CLS] A [SEP] B [SEP]``; 15% of the ordinary tokens selected, of
  those 80% become ``[MASK]``, 10% a random token, 10% stay; masks drawn anew for every batch
  (RoBERTa's dynamic masking). With next-sentence prediction, B is A's continuation half of
  the time and a segment from elsewhere otherwise (segments are cut at a random token, inside
  one document when the stream allows).
- ``SpanCorruption`` (T5): 15% of a window's tokens, in spans of mean length 3, replaced in the
  input by sentinels; the target lists each sentinel and the span it hides (Raffel et al.,
  ``random_spans_noise_mask``). Inputs and targets have fixed lengths, so no padding is needed.

Every objective also says which target tokens the model got right (``val_accuracy``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from llm_core.tokenizer.shards import TokenShards

IGNORE = -100  # target of a position that is not scored
MASK_PROB, MASK_TOKEN_SHARE, RANDOM_TOKEN_SHARE = 0.15, 0.8, 0.1
NOISE_DENSITY, MEAN_SPAN = 0.15, 3.0
WINDOW_TRIES = 10  # draws to find a segment inside one document before taking one that crosses a boundary

Batch = dict[str, torch.Tensor]


class MissingSpecialTokens(ValueError):
    """The tokenizer lacks a token the family's objective needs."""


def special_ids(tokenizer_file: Path, tokens: list[str], family: str) -> list[int]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    ids = [tokenizer.token_to_id(t) for t in tokens]
    missing = [t for t, i in zip(tokens, ids) if i is None]
    if missing:
        raise MissingSpecialTokens(
            f"train.model.family {family} needs the tokenizer's {', '.join(missing)} token(s): train the tokenizer "
            f"with tokenizer.kind: {'wordpiece' if family == 'bert' else 'unigram'}"
            f"{' and enough tokenizer.sentinel_tokens' if family == 't5' else ''}, or add them as tokenizer.extra_tokens")
    return ids


def added_token_ids(tokenizer_file: Path) -> list[int]:
    """The ids of every special token of the tokenizer."""
    from tokenizers import Tokenizer

    return sorted(Tokenizer.from_file(str(tokenizer_file)).get_added_tokens_decoder())


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> tuple[int, int]:
    """(right, scored) over the positions with a target."""
    scored = targets >= 0
    return int((logits.argmax(-1) == targets)[scored].sum()), int(scored.sum())


@dataclass
class CausalLM:
    block_size: int

    def batch(self, data: TokenShards, rng: np.random.Generator, count: int) -> Batch:
        w = torch.from_numpy(data.sample_windows(rng, count, self.block_size + 1))
        return {"idx": w[:, :-1], "targets": w[:, 1:]}

    def window_tokens(self) -> int:
        return self.block_size + 1


class MaskedLM:
    def __init__(self, block_size: int, vocab_size: int, tokenizer_file: Path, nsp: bool, eot: int):
        self.block_size, self.vocab_size, self.nsp, self.eot = block_size, vocab_size, nsp, eot
        self.cls, self.sep, self.mask = special_ids(tokenizer_file, ["[CLS]", "[SEP]", "[MASK]"], "bert")
        self.special = np.array(added_token_ids(tokenizer_file))  # never selected, never drawn as replacements
        self.ordinary = np.setdiff1d(np.arange(vocab_size), self.special)  # what a random replacement draws from

    def window_tokens(self) -> int:
        return self.block_size - 3

    def segment(self, data: TokenShards, rng: np.random.Generator, length: int) -> np.ndarray:
        """``length`` consecutive tokens, inside one document if one of a few draws is."""
        for _ in range(WINDOW_TRIES):
            w = data.sample_windows(rng, 1, length)[0]
            if self.eot not in w:
                break
        return w

    def pair(self, data: TokenShards, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
        """Tokens and segment ids of one example, and its label (0: B follows A, 1: B is random)."""
        n = self.block_size - 3
        if not self.nsp:
            w = data.sample_windows(rng, 1, self.block_size - 2)[0]  # documents' separators stay, as RoBERTa's
            return np.concatenate(([self.cls], w, [self.sep])), np.zeros(self.block_size, dtype=np.int64), 0
        a_len = int(rng.integers(1, n))
        first = self.segment(data, rng, n)
        is_next = rng.random() < 0.5
        a, b = first[:a_len], first[a_len:] if is_next else self.segment(data, rng, n - a_len)
        tokens = np.concatenate(([self.cls], a, [self.sep], b, [self.sep]))
        segments = np.concatenate((np.zeros(a_len + 2, dtype=np.int64), np.ones(len(b) + 1, dtype=np.int64)))
        return tokens, segments, int(not is_next)

    def batch(self, data: TokenShards, rng: np.random.Generator, count: int) -> Batch:
        rows = [self.pair(data, rng) for _ in range(count)]
        idx = np.stack([r[0] for r in rows]).astype(np.int64)
        targets = np.full_like(idx, IGNORE)
        candidates = ~np.isin(idx, self.special)
        selected = candidates & (rng.random(idx.shape) < MASK_PROB)
        for row in np.flatnonzero(~selected.any(axis=1)):  # every example scores at least one token
            selected[row, rng.choice(np.flatnonzero(candidates[row]))] = True
        targets[selected] = idx[selected]
        roll = rng.random(idx.shape)
        idx[selected & (roll < MASK_TOKEN_SHARE)] = self.mask
        swap = selected & (roll >= MASK_TOKEN_SHARE) & (roll < MASK_TOKEN_SHARE + RANDOM_TOKEN_SHARE)
        idx[swap] = rng.choice(self.ordinary, size=int(swap.sum()))
        batch = {"idx": torch.from_numpy(idx), "segments": torch.from_numpy(np.stack([r[1] for r in rows])),
                 "targets": torch.from_numpy(targets)}
        if self.nsp:
            batch["nsp_labels"] = torch.tensor([r[2] for r in rows])
        return batch


def span_lengths(raw: int) -> tuple[int, int, int, int]:
    """(noise tokens, spans, input length, target length) for ``raw`` tokens (T5's arithmetic;
    the input and the target each end with end-of-sequence)."""
    noise = min(max(round(raw * NOISE_DENSITY), 1), raw - 1)
    spans = max(round(noise / MEAN_SPAN), 1)
    return noise, spans, raw - noise + spans + 1, noise + spans + 1


def random_segmentation(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """``total`` split into ``parts`` positive lengths, uniformly at random."""
    cuts = np.sort(rng.choice(np.arange(1, total), parts - 1, replace=False))
    return np.diff(np.concatenate(([0], cuts, [total])))


class SpanCorruption:
    def __init__(self, block_size: int, tokenizer_file: Path):
        self.block_size = block_size
        self.raw = block_size
        while span_lengths(self.raw + 1)[2] <= block_size:  # the longest window whose input fits the context
            self.raw += 1
        self.noise, self.spans, self.input_len, self.target_len = span_lengths(self.raw)
        self.pad, self.eos = special_ids(tokenizer_file, ["<pad>", "</s>"], "t5")
        self.sentinels = special_ids(tokenizer_file, [f"<extra_id_{i}>" for i in range(self.spans)], "t5")

    def window_tokens(self) -> int:
        return self.raw

    def example(self, window: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        noise = random_segmentation(self.noise, self.spans, rng)
        keep = random_segmentation(self.raw - self.noise, self.spans, rng)
        inputs, targets, at = [], [], 0
        for kept, hidden, sentinel in zip(keep, noise, self.sentinels):
            inputs += [window[at:at + kept], [sentinel]]
            targets += [[sentinel], window[at + kept:at + kept + hidden]]
            at += kept + hidden
        inputs.append([self.eos] + [self.pad] * (self.block_size - self.input_len))
        targets.append([self.eos])
        return np.concatenate(inputs), np.concatenate(targets)

    def batch(self, data: TokenShards, rng: np.random.Generator, count: int) -> Batch:
        pairs = [self.example(w, rng) for w in data.sample_windows(rng, count, self.raw)]
        idx = torch.from_numpy(np.stack([p[0] for p in pairs]).astype(np.int64))
        targets = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
        decoder_idx = torch.cat((torch.full((count, 1), self.pad), targets[:, :-1]), dim=1)  # T5 starts with <pad>
        return {"idx": idx, "decoder_idx": decoder_idx, "targets": targets}


Objective = CausalLM | MaskedLM | SpanCorruption


def objective_for(family: str, block_size: int, shards_dir: Path, nsp: bool = True) -> Objective:
    """The objective of ``family`` over the tokenizer output whose shards are in ``shards_dir``
    (its ``tokenizer.json`` beside them); a missing special token raises MissingSpecialTokens."""
    from llm_core.tokenizer.train import TOKENIZER_FILE

    tokenizer_file = Path(shards_dir).parent / TOKENIZER_FILE
    if family == "gpt":
        return CausalLM(block_size)
    meta = TokenShards(shards_dir, "train").meta
    if family == "bert":
        return MaskedLM(block_size, meta["vocab_size"], tokenizer_file, nsp, meta["eot_id"])
    return SpanCorruption(block_size, tokenizer_file)
