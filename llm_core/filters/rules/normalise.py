"""Text normalisation, the first rule: repair mojibake, normalise Unicode, clean invisible
characters and whitespace, and keep the paragraph structure (newlines) that later rules count.

The steps, in order (each a linear scan of the text):

1. **Line breaks**: ``\\r\\n``, ``\\r``, U+2028, U+2029, vertical tab and form feed become ``\\n``.
2. **Mojibake and HTML entities** with `ftfy <https://ftfy.readthedocs.io>`_ (``fix_text``),
   only on the lines that need it: lines with ``&`` (a leftover entity: ``&amp;``,
   ``&nbsp;``, ``&#39;``), a C1 control, a terminal escape, a surrogate, a Latin ligature,
   or a sequence ftfy's own detector (``badness.BADNESS_RE``) flags as mojibake. ftfy works
   line by line anyway; checking first makes clean text cheap. A line longer than
   ``_MAX_UNIT`` characters is repaired in windows around the flagged spots (cut at
   spaces), so one 10 MB line costs no more than many short ones. Of ftfy's fixes we turn
   off those that change correct text: ``fix_character_width`` (it would turn the
   full-width punctuation of Chinese and Japanese into ASCII), ``uncurl_quotes`` (curly
   quotes are real text) and its ``normalization`` (we do that ourselves, step 4).
3. **Characters removed**: C0/C1 control characters except ``\\t`` and ``\\n``, lone
   surrogates (they cannot be written as UTF-8), noncharacters (U+FDD0..U+FDEF and the last
   two code points of every plane), the byte order mark, U+FFF9..U+FFFC, deprecated format
   characters U+206A..U+206F and, with ``remove_invisible`` (default), the invisible ones:
   zero-width space U+200B, word joiner U+2060, invisible operators U+2061..U+2064 and the
   soft hyphen U+00AD. Zero-width (non-)joiners U+200C/U+200D and the bidirectional marks
   are **kept**: Persian, the Indic scripts and emoji sequences need them.
4. **Unicode normalisation**: ``form`` NFC (default: only canonical equivalence, so CJK,
   full-width punctuation and the like are unchanged), NFKC (compatibility forms too:
   full-width Latin, ligatures, superscripts, the ideographic space...) or none.
5. **Whitespace**: with ``unicode_spaces`` (default) no-break and typographic spaces
   (U+00A0, U+1680, U+2000..U+200A, U+202F, U+205F) become a plain space; the ideographic
   space U+3000 is kept (CJK typography) unless NFKC turned it into a space. Trailing
   whitespace of every line is removed; runs of spaces and tabs inside a line become one
   space (leading indentation is kept with ``keep_indentation``, default, for code and
   verse); more than ``max_blank_lines`` consecutive blank lines become that many; blank
   lines at the start and end go.

Signals: ``normalise_chars_changed``, the code points removed, added or rewritten (for a
rewritten line, ftfy's or the normalisation's, the length of the changed span of that line),
and ``normalise_lines_fixed``, the lines ftfy changed. A document that is empty afterwards
is dropped (``empty_text``); nothing else is.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import ClassVar, Literal

import ftfy
import pyarrow as pa
from ftfy.badness import BADNESS_RE
from pydantic import Field

from llm_core.filters.rule import Document, Rule, RuleConfig, Verdict

log = logging.getLogger(__name__)

_MAX_UNIT = 1024  # longest stretch of text handed to ftfy at once (chars)

_LINE_BREAKS = re.compile("[\r\u2028\u2029\x0b\x0c]")
# What ftfy may change besides mojibake its detector flags (see the module docstring).
_NEEDS_FTFY = "\x1b\x80-\x9f\ud800-\udfff\ufb00-\ufb06"
_ALWAYS_REMOVED = "\x00-\x08\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufeff\ufff9-\ufffc\u206a-\u206f\ufdd0-\ufdef\ufffe\uffff"
# Noncharacters of planes 1-16: a class of them is slow to scan, so it runs only on text beyond the BMP.
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_ASTRAL_NONCHARACTERS = re.compile("[" + "".join(chr(p << 16 | 0xFFFE) + chr(p << 16 | 0xFFFF) for p in range(1, 17)) + "]")


def _fast_badness() -> re.Pattern[str]:
    """ftfy's mojibake detector behind a lookahead that each of its matches satisfies: one of
    the non-ASCII characters its pattern names is among the first three. The same matches
    (checked on the lingua sentences of 75 languages and their mojibake), about four times
    faster on Latin-script text, where the plain pattern tries 30 branches at every position."""
    pattern, named = BADNESS_RE.pattern, set()
    for i, ch in enumerate(pattern):
        if ord(ch) > 0x7F:
            named.add(ch)
        if ch == "-" and 0 < i < len(pattern) - 1 and ord(pattern[i - 1]) > 0x7F and ord(pattern[i + 1]) > 0x7F:
            named.update(map(chr, range(ord(pattern[i - 1]), ord(pattern[i + 1]) + 1)))
    cls = "".join(re.escape(c) for c in sorted(named))
    return re.compile(rf"(?=[{cls}]|[\s\S]\s?[{cls}])(?:{pattern})", BADNESS_RE.flags)


_BADNESS = _fast_badness()
_INVISIBLE = "\u200b\u2060-\u2064\u00ad"
_UNICODE_SPACES = re.compile("[\u00a0\u1680\u2000-\u200a\u202f\u205f]")
_TRAILING = re.compile(r"[^\S\n]+(?=\n|\Z)")
_INNER_RUNS = re.compile(r"(?<=\S)[ \t]{2,}")
_LEADING = re.compile(r"^[ \t]+", re.M)


class NormaliseConfig(RuleConfig):
    # ftfy's mojibake repair (with its C1-control and Latin-ligature fixes and terminal escapes).
    fix_mojibake: bool = True
    # Leftover HTML entities (&amp; &nbsp; &#39; ...), decoded by ftfy (only those ending in ';').
    unescape_html: bool = True
    form: Literal["NFC", "NFKC", "none"] = "NFC"
    # Zero-width space, word joiner, invisible operators, soft hyphen (ZWJ/ZWNJ are always kept).
    remove_invisible: bool = True
    # No-break and typographic spaces become ' ' (the ideographic space U+3000 is kept).
    unicode_spaces: bool = True
    keep_indentation: bool = True
    max_blank_lines: int = Field(2, ge=0)


def _changed_span(old: str, new: str) -> int:
    """Code points of ``old`` and ``new`` outside their common prefix and suffix (the larger side)."""
    if old == new:
        return 0
    n = min(len(old), len(new))
    p = 0
    while p < n and old[p] == new[p]:
        p += 1
    s = 0
    while s < n - p and old[-1 - s] == new[-1 - s]:
        s += 1
    return max(len(old), len(new)) - p - s


def _changed_chars(old: str, new: str) -> int:
    """Code points changed between two versions of a span, counted word by word when ftfy left
    the spaces alone (the usual case), else as one changed span."""
    old_words, new_words = old.split(" "), new.split(" ")
    if len(old_words) != len(new_words):
        return _changed_span(old, new)
    return sum(_changed_span(a, b) for a, b in zip(old_words, new_words) if a != b)


class Normalise(Rule):
    name = "normalise"
    Config = NormaliseConfig
    signals: ClassVar = {"normalise_chars_changed": pa.int64(), "normalise_lines_fixed": pa.int32()}

    def __init__(self, config: NormaliseConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        self._ftfy = ftfy.TextFixerConfig(
            unescape_html=c.unescape_html, fix_encoding=c.fix_mojibake, fix_c1_controls=c.fix_mojibake,
            fix_latin_ligatures=c.fix_mojibake, remove_terminal_escapes=c.fix_mojibake,
            fix_character_width=False, uncurl_quotes=False, normalization=None, explain=False,
        )
        cheap = ("&" if c.unescape_html else "") + (_NEEDS_FTFY if c.fix_mojibake else "")
        self._cheap = re.compile(f"[{cheap}]") if cheap else None
        self._removed = re.compile(f"[{_ALWAYS_REMOVED}{_INVISIBLE if c.remove_invisible else ''}]")
        self._blank = re.compile("\n" * (c.max_blank_lines + 2) + "+")
        self._form = None if c.form == "none" else c.form

    def normalise(self, text: str) -> tuple[str, int, int]:
        """The normalised text, the code points changed and the lines ftfy repaired."""
        changed = 0
        if "\r\n" in text:
            text = text.replace("\r\n", "\n")
            changed += 1
        text, n = _LINE_BREAKS.subn("\n", text)
        changed += n
        if self._cheap is not None or self.config.fix_mojibake:
            text, n_chars, fixed = self._fix_with_ftfy(text)
            changed += n_chars
        else:
            fixed = 0
        text, n = self._removed.subn("", text)
        changed += n
        if _ASTRAL.search(text):
            text, n = _ASTRAL_NONCHARACTERS.subn("", text)
            changed += n
        if self._form is not None and not unicodedata.is_normalized(self._form, text):
            lines = text.split("\n")
            for i, line in enumerate(lines):
                if not unicodedata.is_normalized(self._form, line):
                    lines[i] = unicodedata.normalize(self._form, line)
                    changed += _changed_span(line, lines[i])
            text = "\n".join(lines)
        if self.config.unicode_spaces:
            text, n = _UNICODE_SPACES.subn(" ", text)
            changed += n
        before = len(text)
        text = _TRAILING.sub("", text)
        text = _INNER_RUNS.sub(" ", text)
        if not self.config.keep_indentation:
            text = _LEADING.sub("", text)
        text = self._blank.sub("\n" * (self.config.max_blank_lines + 1), text)
        text = text.strip("\n")
        changed += before - len(text)
        return text, changed, fixed

    def _units(self, text: str):
        """Sorted, disjoint (start, end) spans that ftfy should see: whole lines, or windows of
        long lines, around every spot that one of the detectors flags."""
        patterns = [p for p in (self._cheap, _BADNESS if self.config.fix_mojibake else None) if p is not None]
        spans = []
        for pattern in patterns:
            pos = 0
            while (m := pattern.search(text, pos)) is not None:
                # The last character of a match is on the flagged line (a match may begin
                # with the newline before it).
                start, end = self._unit(text, max(m.end() - 1, m.start()))
                spans.append((start, end))
                pos = max(end, m.end(), pos + 1)
        spans.sort()
        merged: list[tuple[int, int]] = []
        for start, end in spans:
            if merged and start < merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged

    @staticmethod
    def _unit(text: str, pos: int) -> tuple[int, int]:
        """The line around ``pos``, or a window of about ``_MAX_UNIT`` characters cut at spaces
        when the line is longer (never searching further than that: linear in the text)."""
        half = _MAX_UNIT // 2
        lo, hi = max(0, pos - half), min(len(text), pos + half)
        start = text.rfind("\n", lo, pos) + 1 or lo
        end = text.find("\n", pos, hi)
        end = hi if end == -1 else end
        if start == lo and lo > 0 and text[lo - 1] != "\n":  # inside a long line: cut at a space
            space = text.rfind(" ", max(0, lo - 64), lo)
            start = space + 1 if space != -1 else lo
        if end == hi and hi < len(text) and text[hi] != "\n":
            space = text.find(" ", hi, min(len(text), hi + 64))
            end = space if space != -1 else hi
        return start, end

    def _fix_with_ftfy(self, text: str) -> tuple[str, int, int]:
        out, pos, changed, fixed = [], 0, 0, 0
        for start, end in self._units(text):
            unit = text[start:end]
            try:
                new = ftfy.fix_text(unit, self._ftfy)
            except Exception:  # ftfy should never raise on a str; if it does, keep the text as it was
                log.warning("ftfy failed on a span of %d chars; left unchanged", len(unit), exc_info=True)
                new = unit
            if new != unit:
                changed += _changed_chars(unit, new)
                fixed += 1
            out += [text[pos:start], new]
            pos = end
        out.append(text[pos:])
        return "".join(out), changed, fixed

    def check(self, doc: Document) -> Verdict:
        text, changed, fixed = self.normalise(doc.text)
        signals = {"normalise_chars_changed": changed, "normalise_lines_fixed": fixed}
        if not text.strip():
            return Verdict.drop("empty_text", 0, **signals)
        return Verdict.keep(text=text, **signals)
