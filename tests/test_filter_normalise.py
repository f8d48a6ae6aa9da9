"""The normalise rule: mojibake, entities, control and invisible characters, Unicode forms,
whitespace, on real text (lingua's web sentences carry real mojibake and entities)."""

import random
import time
import unicodedata

import pyarrow as pa
import pytest

from llm_core.filters.rule import Document
from llm_core.filters.rules.normalise import Normalise, NormaliseConfig
from llm_core.filters.runner import apply_rules


def norm(text, **config):
    return Normalise(NormaliseConfig(**config)).normalise(text)[0]


def sentences(shared_data, lang):
    return (shared_data / "langid_lingua_testdata" / "sentences" / f"{lang}.txt").read_text(encoding="utf-8").splitlines()


def test_real_mojibake_and_entities_are_repaired(shared_data):
    de, en = sentences(shared_data, "de"), sentences(shared_data, "en")
    march = next(line for line in de if "MÃ¤rz" in line)
    assert norm(march) == "Sie starb am 11. März 1796 in Urexweiler."
    assert norm(next(line for line in de if "FÃ¼r Menschen" in line)) == \
        "Für Menschen gefährlich werden kann der Fuchsbandwurm."
    assert "firm’s network" in norm(next(line for line in en if "firm&#8217;s" in line))
    assert "“the kingdom of God”" in norm(next(line for line in en if "&ldquo;the kingdom" in line))
    # the classic three-layer case from ftfy's documentation
    assert norm("The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows.") == "The Mona Lisa doesn’t have eyebrows."
    rule = Normalise()
    verdict = rule.check(Document(march))
    assert verdict.reason is None and verdict.signals == {"normalise_chars_changed": 2, "normalise_lines_fixed": 1}


def test_entities_controls_and_invisible_characters():
    assert norm("Fish &amp; chips&nbsp;for&#39;two&#39; &lt;3") == "Fish & chips for'two' <3"
    assert norm("a < b &amp; c") == "a < b & c"  # ftfy's "auto" would skip entities once it sees '<'
    assert norm("bell\x07 null\x00 del\x7f esc\x1b[31mred\x1b[0m c1\x81 tab\tkept") == "bell null del escred c1 tab\tkept"
    assert norm("one\r\ntwo\rthree\u2028four\x0cfive") == "one\ntwo\nthree\nfour\nfive"
    assert norm("zero\u200bwidth soft\u00adhyphen \ufeffbom") == "zerowidth softhyphen bom"
    # ZWNJ is part of Persian spelling, ZWJ of emoji sequences: kept
    assert norm("می\u200cخواهم 👩\u200d💻") == "می\u200cخواهم 👩\u200d💻"
    assert norm("zero\u200bwidth", remove_invisible=False) == "zero\u200bwidth"


def test_surrogates_and_noncharacters_are_removed():
    out = norm("a\ud800b \ud83d\ude00 c\udfffd \ufdd0\ufffe\U0001fffe\U0010ffffe")
    assert "\ud800" not in out and "\udfff" not in out
    assert "😀" in out  # a well-formed surrogate pair is joined by ftfy
    out.encode("utf-8")  # writable to Arrow
    assert not any(0xFDD0 <= ord(c) <= 0xFDEF or ord(c) & 0xFFFE == 0xFFFE for c in out)


def test_unicode_forms(shared_data):
    full_width = "ＬＯＵＤ ｎｏｉｓｅｓ　１２３ ﬁnd x²"
    assert norm(full_width, form="NFKC") == "LOUD noises 123 find x2"
    assert norm(full_width) == "ＬＯＵＤ ｎｏｉｓｅｓ　１２３ find x²"  # NFC (default) leaves them; ftfy fixes the ligature
    assert norm("e\u0301", form="NFC") == "é" and norm("e\u0301", form="none") == "e\u0301"
    # Japanese and Chinese web text (full-width punctuation, ideographic spaces) is unchanged by default
    for lang in ("ja", "zh"):
        lines = [line for line in sentences(shared_data, lang) if line.strip()]
        assert [norm(line) for line in lines] == [line.strip() for line in lines]


def test_whitespace_keeps_paragraphs():
    text = "  Title \t \n\n\n\n\n\nFirst   paragraph,\t\tline one.  \nline two\u00a0and\u2009more.\n\n\nSecond.\n\n"
    assert norm(text) == "  Title\n\n\nFirst paragraph, line one.\nline two and more.\n\n\nSecond."
    assert norm(text, keep_indentation=False, max_blank_lines=1) == \
        "Title\n\nFirst paragraph, line one.\nline two and more.\n\nSecond."
    assert norm("日本語\u3000テキスト") == "日本語\u3000テキスト"


def test_empty_after_normalisation_is_dropped_and_nothing_else():
    rule = Normalise()
    for text in ("", "   \n\t\n", "\u200b\ufeff\x00"):
        verdict = rule.check(Document(text))
        assert verdict.reason == "empty_text"
    assert rule.check(Document("x")).reason is None


def test_never_raises_and_output_is_clean():
    rng = random.Random(0)
    alphabet = [chr(c) for c in (*range(0, 0x250), *range(0x2000, 0x2070), *range(0xD7F0, 0xE010),
                                 *range(0xFDC0, 0xFE10), *range(0xFFF0, 0x10000), 0x1F600, 0x1FFFE, 0x10FFFF)]
    alphabet += ["&amp;", "&#39;", "Ã©", "â€™", "\r\n", "\n\n\n\n"]
    rule = Normalise()
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
        out, _, _ = rule.normalise(text)
        out.encode("utf-8")
        assert not any(unicodedata.category(c) == "Cc" and c not in "\t\n" for c in out)
        assert "\n\n\n\n" not in out and out == out.strip("\n")


def test_idempotent_on_real_text(shared_data):
    rule = Normalise()
    for lang in ("de", "en", "ru", "ar", "hi", "ko", "th", "vi"):
        text = "\n".join(sentences(shared_data, lang)[:300])
        once = rule.normalise(text)[0]
        assert rule.normalise(once) == (once, 0, 0)


def test_ten_megabytes_in_linear_time(shared_data):
    """A 10 MB document (one with newlines, one a single line): the cost grows linearly."""
    block = "\n".join(sentences(shared_data, "de") + sentences(shared_data, "en"))
    rule = Normalise()
    timings = {}
    for size in (1_000_000, 10_000_000):
        text = block * (size // len(block))
        t = time.perf_counter()
        out, changed, fixed = rule.normalise(text)
        timings[size] = time.perf_counter() - t
        assert "MÃ¤rz" not in out and fixed > 0
    one_line = (block * (10_000_000 // len(block))).replace("\n", " ")
    t = time.perf_counter()
    out, _, _ = rule.normalise(one_line)
    elapsed = time.perf_counter() - t
    assert "\n" not in out and "MÃ¤rz" not in out
    print(f"normalise: 1 MB {timings[1_000_000]:.2f}s, 10 MB {timings[10_000_000]:.2f}s, 10 MB one line {elapsed:.2f}s")
    assert timings[10_000_000] < 25 * max(timings[1_000_000], 0.05)  # quadratic would be ~100x
    assert elapsed < 60


def test_runs_first_in_the_runner():
    rule = Normalise()
    batch = pa.RecordBatch.from_pylist([{"id": "a", "text": "caf\u00c3\u00a9  au lait  "}, {"id": "b", "text": " \u200b "}])
    out = apply_rules([rule], batch).to_pylist()
    assert out[0]["text"] == "café au lait" and out[0]["reason"] is None
    assert out[0]["normalise_chars_changed"] > 0 and out[0]["_trace"] == [16, 12]
    assert out[1]["reason"] == "empty_text" and out[1]["rule"] == "normalise"


@pytest.mark.parametrize("form", ["NFC", "NFKC", "none"])
def test_config_forms_are_accepted(form):
    assert Normalise(NormaliseConfig(form=form)).normalise("ok")[0] == "ok"
