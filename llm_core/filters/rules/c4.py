"""C4's cleaning (Raffel et al. 2020, section 2.2): keep only lines that read like prose, and
drop pages that are placeholders, code, or too short once cleaned.

Line by line, in the order of TFDS's ``c4_utils.clean_page`` and datatrove's
``C4QualityFilter``: a line with a word over 1,000 characters is removed; Wikipedia-style
citations (``[1]``, ``[edit]``, ``[citation needed]``) are cut out; a line that does not end in
terminal punctuation (or ends in an ellipsis) is removed, as is one with fewer than 3 words; a
line containing "lorem ipsum" drops the page; a line mentioning "javascript" is removed; a line
with a curly bracket drops the page; a cookie/terms/privacy line is removed. A page with fewer
than 5 sentences left is dropped; otherwise its text becomes the kept lines, stripped.

Made language-aware where C4's English assumptions would remove every line of a Chinese or
Japanese page: a line written without spaces gets its words from the segmenters of
:mod:`llm_core.filters.text` (for the 3-word minimum and the 1,000-character word limit);
sentence ends include every script's (``。``, ``।``, ``؟``... Unicode's Sentence_Terminal), and
the end quotation marks the paper names include ``” ’ » 」 』`` besides TFDS's ``" '``; sentences are counted by their end marks, not by NLTK's punkt model.
Blank lines are neither kept nor counted.
"""

from __future__ import annotations

import re
from typing import ClassVar

import pyarrow as pa
from pydantic import Field

from llm_core.filters.rule import Document, Rule, RuleConfig, Verdict
from llm_core.filters.text import SPACELESS, count_sentences, ends_sentence, is_word, words

CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
ELLIPSIS = "..."
# The policy phrases of TFDS c4_utils (datatrove's POLICY_SUBSTRINGS).
POLICY_SUBSTRINGS = ["terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"]


class C4Config(RuleConfig):
    # Defaults: Raffel et al. 2020 and TFDS c4_utils, as in datatrove's C4QualityFilter (all on).
    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    # The paper's "period, exclamation mark, question mark, or end quotation mark" (TFDS: . ? ! " ')
    # with the other end quotation marks; Unicode's sentence terminals also count.
    terminal_punctuation: str = ".?!\"'”’»」』"
    min_num_sentences: int = Field(5, ge=0)  # 0 disables
    min_words_per_line: int = Field(3, ge=0)  # 0 disables
    max_word_length: int = Field(1000, ge=0)  # 0 disables
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True
    policy_substrings: list[str] = Field(default_factory=lambda: list(POLICY_SUBSTRINGS))


REMOVED = ("long_word", "no_terminal_punct", "too_few_words", "javascript", "policy")


class C4(Rule):
    name = "c4"
    Config = C4Config
    signals: ClassVar = {
        "c4_lines": pa.int32(),  # non-blank lines in
        "c4_lines_kept": pa.int32(),
        **{f"c4_removed_{kind}": pa.int32() for kind in REMOVED},
        "c4_sentences": pa.int32(),  # in the kept lines
    }

    def _line_words(self, line: str, lang: str | None) -> list[str]:
        """Space-separated words, or the segmenter's words for a line written without spaces."""
        split = line.split()
        if SPACELESS.search(line) and (len(split) < self.config.min_words_per_line
                                       or any(len(w) > self.config.max_word_length for w in split)):
            return [w for w in words(line, lang) if is_word(w)]
        return split

    def _ends_well(self, line: str) -> bool:
        if line.endswith(ELLIPSIS):
            return False
        return line.endswith(tuple(self.config.terminal_punctuation)) or ends_sentence(line)

    def check(self, doc: Document) -> Verdict:
        c = self.config
        lines = [line.strip() for line in (doc.text or "").splitlines()]
        lines = [line for line in lines if line]
        removed = dict.fromkeys(REMOVED, 0)
        kept: list[str] = []
        sentences = 0

        def signals() -> dict:
            return {"c4_lines": len(lines), "c4_lines_kept": len(kept),
                    **{f"c4_removed_{k}": v for k, v in removed.items()}, "c4_sentences": sentences}

        for number, line in enumerate(lines, 1):
            line_words = self._line_words(line, doc.lang)
            if c.max_word_length and any(len(w) > c.max_word_length for w in line_words):
                removed["long_word"] += 1
                continue
            if c.remove_citations:
                line = CITATION.sub("", line)
            if c.filter_no_terminal_punct and not self._ends_well(line):
                removed["no_terminal_punct"] += 1
                continue
            if len(line_words) < c.min_words_per_line:
                removed["too_few_words"] += 1
                continue
            lower = line.lower()
            if c.filter_lorem_ipsum and "lorem ipsum" in lower:
                return Verdict.drop("c4_lorem_ipsum", number, **signals())  # value: the line's number
            if c.filter_javascript and "javascript" in lower:
                removed["javascript"] += 1
                continue
            if c.filter_curly_bracket and "{" in line:
                return Verdict.drop("c4_curly_bracket", number, **signals())
            if c.filter_policy and any(p in lower for p in c.policy_substrings):
                removed["policy"] += 1
                continue
            sentences += max(count_sentences(line), 1)
            kept.append(line)
        if sentences < c.min_num_sentences:
            return Verdict.drop("c4_too_few_sentences", sentences, **signals())
        return Verdict.keep(text="\n".join(kept).strip(), **signals())
