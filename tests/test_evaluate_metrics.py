"""Metric definitions (llm_core.evaluate.metrics) and rolling windows, without a model:
hand-computed values, the reference libraries called directly, and real text."""

import math

import pytest

from llm_core.evaluate.metrics import DocumentScore, bleu, count_words, document_score, language_model_metrics, rouge
from llm_core.evaluate.rolling import rolling_windows


def test_language_model_metrics_by_hand():
    docs = [DocumentScore(nll=10.0, tokens=5, words=4, bytes=20), DocumentScore(nll=6.0, tokens=3, words=2, bytes=12)]
    m = language_model_metrics(docs)
    assert m["token_perplexity"] == pytest.approx(math.exp(16 / 8))
    assert m["word_perplexity"] == pytest.approx(math.exp(16 / 6))
    assert m["byte_perplexity"] == pytest.approx(math.exp(16 / 32))
    assert m["bits_per_byte"] == pytest.approx(0.5 / math.log(2))
    assert m["bits_per_byte"] == pytest.approx(math.log2(m["byte_perplexity"]))
    assert (m["docs"], m["tokens"], m["words"], m["bytes"]) == (2, 8, 6, 32)


def test_words_and_bytes_as_lm_eval_counts_them():
    assert count_words("a b\n\nc") == 3
    assert count_words(" = Robert Boulter = ") == 6, "4 words and, as in lm-eval, the empty strings at both ends"
    doc = document_score("Grüße aus Köln", nll=1.0, tokens=4)
    assert (doc.words, doc.bytes) == (3, 17), "14 characters, three of them two bytes long"


def test_bleu_equals_sacrebleu_and_says_how(shared_data):
    import sacrebleu

    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"])[0] == pytest.approx(100.0)
    folder = shared_data / "eval_parallel_en_de_opennmt"
    if not folder.is_dir():
        pytest.skip("eval_parallel_en_de_opennmt is absent")
    references = (folder / "tgt-val.txt").read_text(encoding="utf-8").splitlines()
    hypotheses = [" ".join(w for i, w in enumerate(r.split()) if i % 5 != 2) for r in references]  # words dropped
    score, signature = bleu(hypotheses, references)
    assert score == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references]).score, abs=1e-9)
    assert 20 < score < 95
    assert signature == f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"


def test_rouge_equals_rouge_score_averaged(shared_data):
    from rouge_score.rouge_scorer import RougeScorer

    by_hand = rouge(["the cat sat"], ["the cat sat on the mat"])
    assert by_hand["rouge1"] == pytest.approx(2 * 1 * 0.5 / 1.5), "P = 3/3, R = 3/6"
    assert by_hand["rouge2"] == pytest.approx(2 * 1 * 0.4 / 1.4), "P = 2/2, R = 2/5"
    assert rouge(["The cats were sitting"], ["the cat was sitting"])["rouge1"] > 0.7, "stemmed and lower-cased"
    folder = shared_data / "eval_rouge_pltrdy"
    if not folder.is_dir():
        pytest.skip("eval_rouge_pltrdy is absent")
    hypotheses = (folder / "hyp.txt").read_text(encoding="utf-8").splitlines()
    references = (folder / "ref.txt").read_text(encoding="utf-8").splitlines()
    assert len(hypotheses) == len(references) == 4
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    direct = [scorer.score(r, h) for h, r in zip(hypotheses, references)]
    ours = rouge(hypotheses, references)
    for kind in ("rouge1", "rouge2", "rougeL"):
        assert ours[kind] == pytest.approx(sum(d[kind].fmeasure for d in direct) / 4, abs=1e-12)
    assert 0 < ours["rouge2"] < ours["rouge1"] < 1


def lm_eval_windows(tokens, prefix_token, max_seq_len, context_len):
    """lm-evaluation-harness's get_rolling_token_windows, as its utils.py defines it."""
    pred_len, predicted = max_seq_len - context_len + 1, 0
    first = min(max_seq_len, len(tokens))
    out = [([prefix_token] + tokens[: first - 1], tokens[:first])]
    predicted += first
    while predicted < len(tokens):
        n = min(len(tokens) - predicted, pred_len)
        end = predicted + n
        out.append((tokens[end - max_seq_len - 1 : end - 1], tokens[end - n : end]))
        predicted += n
    return out


def test_rolling_windows_are_lm_evals():
    gold = [  # lm-eval's tests/test_utils.py, test_get_rolling_token_windows_v1
        ([-100, 0, 1, 2, 3, 4, 5, 6, 7, 8], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        ([9, 10, 11, 12, 13, 14, 15, 16, 17, 18], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]),
        ([19, 20, 21, 22, 23, 24, 25, 26, 27, 28], [20, 21, 22, 23, 24, 25, 26, 27, 28, 29]),
        ([23, 24, 25, 26, 27, 28, 29, 30, 31, 32], [30, 31, 32, 33]),
    ]
    assert rolling_windows(list(range(34)), 10, prefix_token=-100) == gold, "stride = max_len: context_len 1"
    for n in (1, 5, 10, 11, 34, 97):
        tokens = list(range(n))
        for stride in (1, 3, 7, 10):
            windows = rolling_windows(tokens, 10, stride, prefix_token=-1)
            assert windows == lm_eval_windows(tokens, -1, 10, context_len=10 - stride + 1)
            assert [t for _, predicted in windows for t in predicted] == tokens, "every token scored once, in order"
            for inputs, predicted in windows:
                assert len(inputs) <= 10 and len(predicted) <= len(inputs)
                # the last len(predicted) inputs are each predicted token's immediate predecessor
                assert inputs[len(inputs) - len(predicted):] == [p - 1 for p in predicted]
            for inputs, predicted in windows[1:]:
                assert len(inputs) == 10 and len(predicted) <= stride
                assert inputs.index(predicted[0] - 1) + 1 >= 10 - stride + 1, "context of the first scored token"
    assert rolling_windows([], 10, prefix_token=0) == []
    with pytest.raises(ValueError, match="stride"):
        rolling_windows([1, 2], 10, 11, prefix_token=0)


def test_bits_per_byte_does_not_depend_on_the_tokenizer(shared_data):
    """A fixed character-level model: each byte has its own probability (its frequency in
    Shakespeare), whatever came before. A tokenizer only groups the bytes, so the text's
    log-likelihood is the sum over tokens of their bytes' log-probabilities, whatever the
    grouping. Scored through three tokenizations (byte-level BPE of 300 and 2000 tokens, and
    single bytes), bits per byte must agree (and equal the model's cross-entropy in bits),
    while token perplexity, which divides by the token count, must not."""
    from collections import Counter

    from llm_core.config import TokenizerConfig
    from llm_core.tokenizer.train import train_tokenizer

    shakespeare = (shared_data / "text_tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    counts = Counter(shakespeare.encode("utf-8"))
    total = sum(counts.values()) + 256
    logp = {b: math.log((counts[b] + 1) / total) for b in range(256)}  # add-one: every byte possible
    wiki = shared_data / "text_wikitext2_raw_test" / "wikitext-test.txt"
    text = (wiki.read_text(encoding="utf-8") if wiki.is_file() else shakespeare[-20000:])[:20000]
    text = "".join(ch for ch in text if ord(ch) < 128)  # single tokens decode to their own bytes
    scenes = [s for s in shakespeare.split("\n\n") if s.strip()][:2000]

    def tokenize_bpe(size):
        tokenizer = train_tokenizer(TokenizerConfig(vocab_size=size), scenes)
        return [tokenizer.decode([i]).encode("utf-8") for i in tokenizer.encode(text, add_special_tokens=False).ids]

    tokenizations = {"bpe300": tokenize_bpe(300), "bpe2000": tokenize_bpe(2000),
                     "bytes": [bytes([b]) for b in text.encode("utf-8")]}
    results = {}
    for name, pieces in tokenizations.items():
        assert b"".join(pieces) == text.encode("utf-8"), f"{name}: the tokens are the text's bytes"
        nll = -sum(logp[b] for piece in pieces for b in piece)
        results[name] = language_model_metrics([document_score(text, nll, len(pieces))])
    bpb = {name: m["bits_per_byte"] for name, m in results.items()}
    expected = -sum(logp[b] for b in text.encode("utf-8")) / len(text.encode("utf-8")) / math.log(2)
    assert all(v == pytest.approx(expected, rel=1e-12) for v in bpb.values()), bpb
    assert 3 < expected < 6, "a unigram byte model of English"
    words = [m["word_perplexity"] for m in results.values()]
    assert max(words) == pytest.approx(min(words), rel=1e-12), "word perplexity neither"
    token_ppl = sorted(m["token_perplexity"] for m in results.values())
    assert token_ppl[0] * 2 < token_ppl[-1], "token perplexity does depend on the tokenizer"
    assert len({m["tokens"] for m in results.values()}) == 3
