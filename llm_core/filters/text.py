"""Text units the quality rules measure: words, lines, paragraphs, n-grams.

Words are what NLTK's Treebank tokenizer (datatrove's English default) gives, approximated
by one regular expression: runs of word characters (marks included, so Devanagari or Thai
vowel signs do not split a word; inner ``-`` and ``'`` and digit separators kept) and
punctuation as separate tokens (``...`` and ``--`` one each). No downloaded model: NLTK's
punkt data would be fetched at run time.

Chinese, Japanese and Thai put no spaces between words, so a whitespace count would see a
paragraph as one "word". Those are cut by real segmenters whose dictionaries ship inside
their wheels: jieba-rs (``rjieba``) for Chinese, SudachiPy with its small dictionary for
Japanese (split mode A, as spaCy's Japanese pipeline and so datatrove use), and nlpO3 (the
Rust port of PyThaiNLP's ``newmm``) with PyThaiNLP's word list for Thai. The segmenter is
chosen by ``lang`` (the language-ID label) or else by the script most of the text is in, so
a Chinese page that language ID missed is still cut into words. Han, kana or Thai characters
in a text of another language are one token each, as they are (logged once) when a segmenter
is not installed: that over-counts words rather than dropping the document.
"""

from __future__ import annotations

import logging
import re
import sys
import unicodedata
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import regex

log = logging.getLogger(__name__)

# Scripts written without spaces between words (stdlib ``re`` with explicit ranges: several
# times faster than the ``regex`` module's \p{...} classes on the hot path).
_HAN = "\u2e80-\u2fdf\u3005-\u3007\u3021-\u3029\u3038-\u303b\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
_KANA = "\u3041-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f"
_THAI = "\u0e00-\u0e7f"
SPACELESS = re.compile(f"[{_HAN}{_KANA}{_THAI}]")
DENSE = re.compile(f"[{_HAN}{_KANA}]")  # a word or more per character
_SCRIPTS = {"ja": re.compile(f"[{_KANA}]"), "zh": re.compile(f"[{_HAN}]"), "th": re.compile(f"[{_THAI}]")}
_LETTER = re.compile(r"[^\W\d_]")  # a letter of any script: Gopher's "alphabetic character"
_SCRIPT_SAMPLE = 20_000  # characters looked at to guess the script of a text without a usable label


@lru_cache(maxsize=1)
def _marks() -> str:
    """Combining marks (Unicode category M) as a character class body: Python's \\w has no marks,
    which would cut Devanagari, Thai or Tamil words at every vowel sign (built once, ~0.3 s)."""
    marks = [c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c))[0] == "M"]
    starts = [c for i, c in enumerate(marks) if i == 0 or marks[i - 1] != c - 1]  # as ranges: fast
    ends = [c for i, c in enumerate(marks) if i == len(marks) - 1 or marks[i + 1] != c + 1]
    return "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in zip(starts, ends))


@lru_cache(maxsize=1)
def _token_pattern() -> re.Pattern:
    w = rf"[\w{_marks()}]"
    return re.compile(
        rf"[{_HAN}{_KANA}{_THAI}]"  # a spaceless-script character outside its segmenter
        r"|\d+(?:[.,]\d+)+"  # 3.14, 1,000,000
        rf"|{w}+(?:['’\-]{w}+)*"  # words, don't, state-of-the-art
        r"|\.\.+|--+|[^\w\s]"  # punctuation and symbols, one each; "..." and "--" as one token
    )


_WORD_CHAR = re.compile(r"\w")
_CHUNK = 8_000  # characters per segmenter call (SudachiPy refuses inputs over 49,149 bytes)


def regex_words(text: str) -> list[str]:
    """Tokens of a text whose words are separated by spaces (every language but zh/ja/th)."""
    return _token_pattern().findall(text)


def _segmenter_zh() -> Callable[[str], list[str]]:
    import rjieba

    return rjieba.cut  # jieba's default mode, HMM on for unknown words


def _segmenter_ja() -> Callable[[str], list[str]]:
    from sudachipy import Dictionary, SplitMode

    tokenizer = Dictionary(dict="small").create(mode=SplitMode.A)
    return lambda text: [m.surface() for m in tokenizer.tokenize(text)]


def _segmenter_th() -> Callable[[str], list[str]]:
    import nlpo3

    spec = find_spec("pythainlp")  # its word list only; its own newmm is pure Python and 20x slower
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("pythainlp (the Thai word list) is not installed")
    nlpo3.load_dict(str(Path(list(spec.submodule_search_locations)[0]) / "corpus" / "words_th.txt"), "th")
    return lambda text: nlpo3.segment(text, "th")


_SEGMENTERS = {"zh": _segmenter_zh, "ja": _segmenter_ja, "th": _segmenter_th}


@lru_cache(maxsize=None)
def segmenter(lang: str) -> Callable[[str], list[str]] | None:
    """The word segmenter of a spaceless language, loaded once per process; None if not installed."""
    try:
        return _SEGMENTERS[lang]()
    except ImportError as error:
        log.warning("no word segmenter for %r (%s): counting its characters as words", lang, error)
        return None


def spaceless_language(text: str, lang: str | None) -> str | None:
    """``zh``, ``ja`` or ``th`` when the text is to be cut by that language's segmenter.

    ``lang`` decides when it names one of them; otherwise the text must be mostly (over half of
    its letters, in its first characters) in that script: kana means Japanese, Han alone Chinese.
    """
    lang = (lang or "").split("-")[0].split("_")[0].lower()
    if lang in _SEGMENTERS:
        return lang
    sample = text[:_SCRIPT_SAMPLE]
    if not SPACELESS.search(sample):
        return None
    letters = len(_LETTER.findall(sample))
    kana, han, thai = (len(_SCRIPTS[k].findall(sample)) for k in ("ja", "zh", "th"))
    if thai * 2 > letters:
        return "th"
    if (kana + han) * 2 > letters:
        return "ja" if kana * 10 > kana + han else "zh"
    return None


def chunks(text: str, size: int = _CHUNK) -> Iterator[str]:
    """The text cut at line ends into pieces of at most ``size`` characters (longer lines are cut
    at ``size``), so that a segmenter never sees one huge input."""
    start, n = 0, len(text)
    while start < n:
        end = min(start + size, n)
        if end < n:
            newline = text.rfind("\n", start, end)
            end = newline + 1 if newline > start else end
        yield text[start:end]
        start = end


def _segment(text: str, cut: Callable[[str], list[str]]) -> tuple[list[str], list[bool]]:
    """Tokens of a spaceless-script text and, for each, whether whitespace comes before it."""
    tokens: list[str] = []
    spaced: list[bool] = []
    for piece in chunks(text):
        space = True
        for part in cut(piece):
            if SPACELESS.search(part):  # a segmenter's word
                tokens.append(part)
                spaced.append(space)
                space = False
                continue
            end = 0  # spaces, Latin words and punctuation: cut as in any other language
            for m in _token_pattern().finditer(part):
                tokens.append(m.group())
                spaced.append(space or m.start() > end)
                space, end = False, m.end()
            space = space or end < len(part)
    return tokens, spaced


def words(text: str, lang: str | None = None) -> list[str]:
    """The text's words and punctuation tokens, in order (see the module docstring)."""
    return words_and_spaced(text, lang)[0]


def words_and_spaced(text: str, lang: str | None = None) -> tuple[list[str], list[str]]:
    """:func:`words`, and the text cut as whitespace would cut it if every word stood apart
    (:func:`glue`): in a language written with spaces, simply ``text.split()``."""
    spaceless = spaceless_language(text, lang)
    cut = segmenter(spaceless) if spaceless else None
    if cut is None:
        return regex_words(text), text.split()
    tokens, spaced = _segment(text, cut)
    return tokens, glue(tokens, spaced)


def glue(tokens: Sequence[str], spaced: Sequence[bool]) -> list[str]:
    """Tokens joined back into what whitespace alone would separate, except that two words written
    together (Chinese, Japanese, Thai) stay apart: punctuation joins the word it touches."""
    out: list[str] = []
    for token, space in zip(tokens, spaced):
        if out and not space and (not is_word(token) or not is_word(out[-1])):
            out[-1] += token
        else:
            out.append(token)
    return out


def is_word(token: str) -> bool:
    """Has a letter or digit: not a punctuation or symbol token."""
    return token[:1].isalnum() or _WORD_CHAR.search(token) is not None


def has_alpha(token: str) -> bool:
    """Has a letter (Gopher's "alphabetic character")."""
    return token[:1].isalpha() or _LETTER.search(token) is not None


def lines(text: str) -> list[str]:
    """Lines as Gopher's repetition test cuts them: at runs of newlines, so blank lines vanish
    but lines of spaces or tabs stay (a page padded with them is repetitive)."""
    return re.split(r"\n+", text)


def nonblank_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# Unicode's Sentence_Terminal characters: what datatrove's TERMINAL_PUNCTUATION lists, kept current.
_CLOSERS = "\"'”’»」』）)\\]"
_ENDS_SENTENCE = regex.compile(rf"\p{{STerm}}[{_CLOSERS}]*\s*$")
_SENTENCE = regex.compile(rf"[。！？｡]+[{_CLOSERS}]*|\p{{STerm}}+[{_CLOSERS}]*(?=\s|$)")


def paragraphs(text: str) -> list[str]:
    """Blocks separated by blank lines (two or more newlines), as in Gopher."""
    return re.split(r"\n{2,}", text.strip())


def ends_sentence(line: str) -> bool:
    """The line ends a sentence in its script (. ! ? 。 । ؟ ...), maybe inside quotes or brackets."""
    return _ENDS_SENTENCE.search(line) is not None


def count_sentences(text: str) -> int:
    """Sentence ends (a run of terminal marks and closing quotes, followed by a space or the end;
    Chinese and Japanese full stops need no space), without NLTK's punkt model: an abbreviation
    like "Mr." counts as an end."""
    return sum(1 for _ in _SENTENCE.finditer(text))


def duplicates(items: Sequence[str]) -> tuple[int, int]:
    """How many items repeat an earlier one, and their characters (Gopher's duplicate fractions)."""
    seen: set[str] = set()
    repeats = [item for item in items if item in seen or seen.add(item)]
    return len(repeats), sum(map(len, repeats))


class NGrams:
    """Word n-grams of one text as 64-bit hashes (numpy), so every statistic is linear in words."""

    def __init__(self, tokens: Sequence[str]):
        self.n_words = len(tokens)
        ids: dict[str, int] = {}
        self.ids = np.fromiter((ids.setdefault(t, len(ids)) for t in tokens), np.uint64, len(tokens))
        self.ends = np.zeros(len(tokens) + 1, np.int64)  # ends[i]: characters of tokens[:i]
        np.cumsum(np.fromiter(map(len, tokens), np.int64, len(tokens)), out=self.ends[1:])

    def hashes(self, n: int) -> np.ndarray:
        """One hash per n-gram (start positions 0 .. n_words - n); collisions are negligible."""
        m = self.n_words - n + 1
        h = np.zeros(max(m, 0), np.uint64)
        with np.errstate(over="ignore"):
            for k in range(n):
                h = h * np.uint64(1_000_003) + self.ids[k:k + m] + np.uint64(1)
        return h

    def chars(self, n: int) -> np.ndarray:
        """Characters of each n-gram's words (without the spaces between them)."""
        return self.ends[n:] - self.ends[:-n]

    def top_chars(self, n: int) -> int:
        """Characters covered by the most frequent n-gram, counted as Gopher does: the n-gram
        written with single spaces, times its count (0 when the text has fewer than n words)."""
        h = self.hashes(n)
        if not len(h):
            return 0
        _, first, counts = np.unique(h, return_index=True, return_counts=True)
        most = counts.max()
        start = int(first[counts == most].min())  # ties: the one seen first, as Counter.most_common
        return (int(self.chars(n)[start]) + n - 1) * int(most)

    def duplicate_chars(self, n: int) -> int:
        """Characters in n-grams that repeat an earlier one, each word counted once: after a
        repeat the scan jumps past it (Gopher's duplicate n-gram character fraction)."""
        h = self.hashes(n)
        if not len(h):
            return 0
        _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
        repeated = np.flatnonzero(counts[inverse] > 1)  # only these positions can be repeats
        if not len(repeated):
            return 0
        seen: set[int] = set()
        total = skip_to = 0
        # The other positions are never repeats and never seen again: the scan visits only these.
        for i, key, size in zip(repeated.tolist(), h[repeated].tolist(), self.chars(n)[repeated].tolist()):
            if i >= skip_to and key in seen:
                total, skip_to = total + size, i + n
            elif i >= skip_to:
                seen.add(key)
        return total
