"""Measuring the filter rules on labelled data: language ID accuracy, PII precision and recall.

Used by the tests and ``benchmarks/filters.py``; the stage never imports this module, so
changing how we measure does not change any output key.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

from llm_core.filters.langid import detect_language
from llm_core.filters.rules.pii import PiiConfig, PiiSpan, find_pii

# --- language ID accuracy on labelled text ----------------------------------------------------

# The 176 labels of lid.176 (fasttext.cc/docs/en/language-identification.html).
LID176_LABELS = frozenset("""
af als am an ar arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce ceb ckb co cs cv
cy da de diq dsb dty dv el eml en eo es et eu fa fi fr frr fy ga gd gl gn gom gu gv he hi hif hr hsb ht
hu hy ia id ie ilo io is it ja jbo jv ka kk km kn ko krc ku kv kw ky la lb lez li lmo lo lrc lt lv mai
mg mhr min mk ml mn mr mrj ms mt mwl my myv mzn nah nap nds ne new nl nn no oc or os pa pam pfl pl pms
pnb ps pt qu rm ro ru rue sa sah sc scn sco sd sh si sk sl so sq sr su sv sw ta te tg th tk tl tr tt
tyv ug uk ur uz vec vep vi vls vo wa war wuu xal xmf yi yo yue zh
""".split())

# lid.176 labels Norwegian Bokmål "no"; lingua's test set calls it "nb".
LID176_ALIASES: dict[str, tuple[str, ...]] = {"nb": ("no",)}

# UDHR translations (udhr2.zip, ISO 639-3 file names) and lid.176's label for each.
UDHR_LANGUAGES: dict[str, str] = {
    "eng": "en", "deu": "de", "fra": "fr", "spa": "es", "ita": "it", "por_PT": "pt", "nld": "nl",
    "pol": "pl", "ces": "cs", "slk": "sk", "slv": "sl", "hrv": "hr", "hun": "hu", "fin": "fi",
    "est": "et", "lav": "lv", "lit": "lt", "swe": "sv", "dan": "da", "nob": "no", "isl": "is",
    "ron": "ro", "tur": "tr", "rus": "ru", "ukr": "uk", "bul": "bg", "ell_monotonic": "el",
    "arb": "ar", "heb": "he", "pes_1": "fa", "hin": "hi", "ben": "bn", "tam": "ta", "tha": "th",
    "vie": "vi", "ind": "id", "cmn_hans": "zh", "jpn": "ja", "kor": "ko", "kat": "ka", "hye": "hy",
    "cat": "ca", "eus": "eu", "glg": "gl", "swh": "sw", "urd": "ur",
}


def language_accuracy(
    samples: Mapping[str, Iterable[str]],
    detect: Callable[[str], tuple[str, float]] = detect_language,
    aliases: Mapping[str, Sequence[str]] = LID176_ALIASES,
) -> dict[str, float]:
    """Per language, the fraction of its texts whose detected label is the language (or one of
    its ``aliases``). The mean over languages is ``sum(acc.values()) / len(acc)``."""
    accuracy = {}
    for lang, texts in samples.items():
        accepted = {lang, *aliases.get(lang, ())}
        results = [detect(t)[0] in accepted for t in texts]
        if results:
            accuracy[lang] = sum(results) / len(results)
    return accuracy


def lingua_samples(folder: Path, languages: Iterable[str] | None = None, per_doc: int = 1,
                   limit: int | None = None) -> dict[str, list[str]]:
    """Texts from lingua's test set (``sentences/<lang>.txt`` under ``folder``): groups of
    ``per_doc`` consecutive sentences joined by spaces (1: single sentences), at most ``limit``
    groups per language; by default of every language lid.176 has a label for."""
    folder = Path(folder) / "sentences"
    if languages is None:  # the languages lid.176 knows (8 of lingua's 75 it does not: lg mi sn st tn ts xh zu)
        languages = [p.stem for p in folder.glob("*.txt")
                     if p.stem in LID176_LABELS or set(LID176_ALIASES.get(p.stem, ())) & LID176_LABELS]
    langs = sorted(languages)
    samples = {}
    for lang in langs:
        lines = [ln.strip() for ln in (folder / f"{lang}.txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
        docs = [" ".join(lines[i:i + per_doc]) for i in range(0, len(lines) - per_doc + 1, per_doc)]
        samples[lang] = docs[:limit]
    return samples


def udhr_samples(zip_path: Path, languages: Mapping[str, str] = UDHR_LANGUAGES,
                 min_chars: int | None = None) -> dict[str, list[str]]:
    """UDHR translations from NLTK's ``udhr2.zip`` (UTF-8), keyed by lid.176 label. With
    ``min_chars`` each text is cut into chunks of consecutive lines of at least that many
    characters (paragraph-sized documents); without it each translation is one document."""
    samples: dict[str, list[str]] = {}
    with zipfile.ZipFile(zip_path) as z:
        for name, lang in languages.items():
            text = z.read(f"udhr2/{name}.txt").decode("utf-8")
            if min_chars is None:
                samples.setdefault(lang, []).append(text)
                continue
            chunks, current = [], []
            for line in (ln.strip() for ln in text.splitlines()):
                if line:
                    current.append(line)
                if sum(map(len, current)) >= min_chars:
                    chunks.append("\n".join(current))
                    current = []
            samples.setdefault(lang, []).extend(chunks)
    return samples


# --- evaluation on a labelled set ---------------------------------------------------------------
def _gold_spans(text: str, labels: Iterable[Mapping[str, str]]) -> list[PiiSpan]:
    """Each label's value located in the text (the next occurrence not already taken)."""
    spans: list[PiiSpan] = []
    for label in labels:
        value, start = label["value"], 0
        while True:
            start = text.find(value, start)
            if start < 0:
                raise ValueError(f"label value {value!r} is not in the text {text!r}")
            if not any(s.start < start + len(value) and start < s.end for s in spans):
                break
            start += 1
        spans.append(PiiSpan(label["kind"], start, start + len(value)))
    return spans


def score_pii(
    examples: Iterable[Mapping[str, Any]],
    config: PiiConfig | None = None,
    match: Literal["overlap", "exact"] = "overlap",
) -> dict[str, dict[str, float]]:
    """Precision, recall and F1 of :func:`find_pii` per kind and overall (``"all"``) on records
    ``{"text": ..., "pii": [{"kind": ..., "value": ...}, ...]}``. A finding is right when it
    has a gold span's kind and overlaps it (``overlap``: "415-555-0132 ext. 12" finds the
    labelled "415-555-0132") or has exactly its span (``exact``); each gold span counts once."""
    c = config if config is not None else PiiConfig()
    counts = {kind: Counter() for kind in (*c.kinds, "all")}
    for example in examples:
        text = example["text"]
        gold = [g for g in _gold_spans(text, example.get("pii", [])) if g.kind in c.kinds]
        taken = [False] * len(gold)
        for pred in find_pii(text, c):
            hit = next(
                (i for i, g in enumerate(gold) if not taken[i] and g.kind == pred.kind
                 and ((g.start, g.end) == (pred.start, pred.end) if match == "exact"
                      else g.start < pred.end and pred.start < g.end)),
                None,
            )
            outcome = "fp" if hit is None else "tp"
            if hit is not None:
                taken[hit] = True
            counts[pred.kind][outcome] += 1
            counts["all"][outcome] += 1
        for g, t in zip(gold, taken):
            if not t:
                counts[g.kind]["fn"] += 1
                counts["all"]["fn"] += 1
    scores = {}
    for kind, n in counts.items():
        tp, fp, fn = n["tp"], n["fp"], n["fn"]
        p = tp / (tp + fp) if tp + fp else 1.0
        r = tp / (tp + fn) if tp + fn else 1.0
        scores[kind] = {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r,
                        "f1": 2 * p * r / (p + r) if p + r else 0.0}
    return scores
