"""Tests for dsum.metric.rouge: hand-computed values, parity with pltrdy `rouge==1.0.1`, row handling.

F(p, r) below is the package's F1, 2 * (p * r) / (p + r + 1e-8); so identical texts score
F(1, 1) = 0.999999995, never exactly 1.
"""

import csv
import random
from pathlib import Path

import pytest

from dsum.util.errors import UserError
from dsum.metric.rouge import (
    SPECIAL_STRINGS,
    ANALYSERS,
    TOKENIZERS,
    RowScore,
    Score,
    get_analyser,
    get_tokenizer,
    rouge_f1,
    score_texts,
    strip_special,
)

DEV_CSV = Path(__file__).parents[3] / "shared" / "data" / "competition-ko" / "dev.csv"


def F(p: float, r: float) -> float:
    return 2.0 * ((p * r) / (p + r + 1e-8))


PERFECT = F(1.0, 1.0)  # 0.999999995


def ws(text: str) -> list[str]:
    return text.split()


# --------------------------------------------------------------------------------------------
# Hand-computed pairs


def test_whitespace_pair_by_hand():
    # hyp words {나는, 사과를, 좋아한다}, ref {나는, 배를, 좋아한다}: 2 of 3 shared -> P = R = 2/3.
    # No shared bigram -> R2 = 0. LCS "나는 좋아한다" = 2 words of 3 unique -> RL = F(2/3, 2/3).
    # Google's rouge_score default tokenizer keeps only [a-z0-9], so it sees no token here and
    # gives 0 for all three; 2/3 is what the pltrdy package (the board's scorer) gives.
    r1, r2, rl = rouge_f1(ws("나는 사과를 좋아한다"), ws("나는 배를 좋아한다"))
    assert r1 == pytest.approx(F(2 / 3, 2 / 3), abs=1e-12)
    assert r1 == pytest.approx(0.6666666617, abs=1e-9)
    assert r2 == 0.0
    assert rl == pytest.approx(F(2 / 3, 2 / 3), abs=1e-12)


def test_mecab_pair_by_hand():
    # Same pair in Mecab morphemes: 나 는 사과 를 좋아한다 / 나 는 배 를 좋아한다.
    # Unigrams: 4 of 5 shared -> P = R = 4/5 (particles now earn credit, unlike whitespace words).
    # Bigrams: (나,는) and (를,좋아한다) shared of 4 each -> P = R = 1/2.
    # LCS 나 는 를 좋아한다 = 4 unique words of 5 -> RL = F(4/5, 4/5).
    morphs = get_analyser("mecab")
    hyp, ref = morphs("나는 사과를 좋아한다"), morphs("나는 배를 좋아한다")
    assert hyp == ["나", "는", "사과", "를", "좋아한다"]
    assert ref == ["나", "는", "배", "를", "좋아한다"]
    r1, r2, rl = rouge_f1(hyp, ref)
    assert r1 == pytest.approx(F(4 / 5, 4 / 5), abs=1e-12)
    assert r2 == pytest.approx(F(1 / 2, 1 / 2), abs=1e-12)
    assert rl == pytest.approx(F(4 / 5, 4 / 5), abs=1e-12)


def test_mecab_repeated_words_count_once():
    # hyp: # Person 1 # 은 회의 에 늦 었 습니다 .   (9 unique words; "#" twice)
    # ref: # Person 1 # 은 회의 에 늦 지 않 았 습니다 .   (11 unique words)
    # The final "." only ends the sentence. Shared unique words: # Person 1 은 회의 에 늦 습니다 = 8.
    # R1 = F(8/9, 8/11). Bigrams: 9 vs 11 unique, 7 shared (up to 에-늦) -> R2 = F(7/9, 7/11).
    # The LCS is 9 words long (# twice) but counts as a SET of 8 -> RL = F(8/9, 8/11) too.
    morphs = get_analyser("mecab")
    r1, r2, rl = rouge_f1(morphs("#Person1#은 회의에 늦었습니다."), morphs("#Person1#은 회의에 늦지 않았습니다."))
    assert r1 == pytest.approx(F(8 / 9, 8 / 11), abs=1e-12)
    assert r2 == pytest.approx(F(7 / 9, 7 / 11), abs=1e-12)
    assert rl == pytest.approx(F(8 / 9, 8 / 11), abs=1e-12)


def test_mecab_reordered_sentences_by_hand():
    # hyp "민수 는 학교 에 갔 다 . 지수 는 집 에 있 었 다 ." and the ref with the sentences swapped.
    # Same 10 unique words -> R1 = F(1, 1). Bigrams cross the "." : 12 unique on each side, all
    # shared except (다,지수) / (다,민수) -> R2 = F(11/12, 11/12). ROUGE-L is summary level: each
    # ref sentence equals one hyp sentence, so the LCS union is all 10 words -> RL = F(1, 1).
    morphs = get_analyser("mecab")
    r1, r2, rl = rouge_f1(morphs("민수는 학교에 갔다. 지수는 집에 있었다."), morphs("지수는 집에 있었다. 민수는 학교에 갔다."))
    assert r1 == pytest.approx(PERFECT, abs=1e-12)
    assert r2 == pytest.approx(F(11 / 12, 11 / 12), abs=1e-12)
    assert rl == pytest.approx(PERFECT, abs=1e-12)


def test_multi_sentence_lcs_union_by_hand():
    # The package's own docstring example: r = w1 w2 w3 w4 w5, C = c1 . c2 with
    # c1 = w1 w2 w6 w7 w8 and c2 = w1 w3 w8 w9 w5. LCS(r,c1) = w1 w2, LCS(r,c2) = w1 w3 w5,
    # union = {w1 w2 w3 w5} = 4; m = 5 unique ref words, n = 8 unique hyp words.
    # R1: same 4 shared of 8 / 5. R2: hyp has 9 unique bigrams (flattened over the "."), ref 4,
    # only (w1,w2) shared -> F(1/9, 1/4).
    r1, r2, rl = rouge_f1(ws("w1 w2 w6 w7 w8 . w1 w3 w8 w9 w5"), ws("w1 w2 w3 w4 w5"))
    assert r1 == pytest.approx(F(4 / 8, 4 / 5), abs=1e-12)
    assert r2 == pytest.approx(F(1 / 9, 1 / 4), abs=1e-12)
    assert rl == pytest.approx(F(4 / 8, 4 / 5), abs=1e-12)


def test_whitespace_only_piece_is_an_empty_word():
    # "가 나 .  . 다" splits into "가 나", "" (the whitespace-only piece) and "다": hyp words are
    # 가 나 "" 다. R1 = F(3/4, 3/3). Bigrams (가,나) (나,"") ("",다) vs (가,나) (나,다): F(1/3, 1/2).
    # ROUGE-L: LCS union {가, 나} + {} + {다} = 3 -> F(3/4, 3/3).
    r1, r2, rl = rouge_f1(ws("가 나 .  . 다"), ws("가 나 다"))
    assert r1 == pytest.approx(F(3 / 4, 1.0), abs=1e-12)
    assert r2 == pytest.approx(F(1 / 3, 1 / 2), abs=1e-12)
    assert rl == pytest.approx(F(3 / 4, 1.0), abs=1e-12)


def test_lcs_tie_rule_is_the_packages():
    # ref "a b", hyp sentences "b a" and "b". LCS(ab, ba) has length 1 and could be a or b; the
    # package's back-tracking picks b, so the union is {b}: RL = F(1/2, 1/2). Picking a would
    # give {a, b} and RL = F(1, 1).
    _, _, rl = rouge_f1(ws("b a . b"), ws("a b"))
    assert rl == pytest.approx(F(1 / 2, 1 / 2), abs=1e-12)


def test_empty_hypothesis_scores_zero():
    assert rouge_f1([], ws("가 나")) == (0.0, 0.0, 0.0)
    assert rouge_f1(["."], ws("가 나")) == (0.0, 0.0, 0.0)  # only "." -> no sentence
    assert rouge_f1(ws("가 나"), []) == (0.0, 0.0, 0.0)


def test_identical_texts_score_just_below_one():
    # The package returns 0.999999995 for identical texts (the 1e-8 in F1), not 1.0.
    assert rouge_f1(ws("가 나 다"), ws("가 나 다")) == (PERFECT, PERFECT, PERFECT)
    assert PERFECT == pytest.approx(0.999999995, abs=1e-15)


# --------------------------------------------------------------------------------------------
# Parity with the package


def package_f1(hyp: str, ref: str) -> tuple[float, float, float]:
    rouge = pytest.importorskip("rouge")
    try:
        s = rouge.Rouge().get_scores(hyp, ref)[0]
    except ValueError:  # the package raises on an empty hypothesis/reference; we give 0
        return 0.0, 0.0, 0.0
    return s["rouge-1"]["f"], s["rouge-2"]["f"], s["rouge-l"]["f"]


CRAFTED = [
    ("가 나 .  . 다", "가 나 다"),  # whitespace-only piece
    ("가 가 가 나", "가 나 나"),  # repeated words and bigrams
    ("w1 w2 w6 w7 w8 . w1 w3 w8 w9 w5", "w1 w2 w3 w4 w5"),  # multi-sentence LCS union
    ("b a . b", "a b"),  # LCS tie rule
    ("a b c . c b a . b", "c a b . a c . b b"),  # union over several ref sentences
    ("가.나.다", "다.나.가"),  # "." without spaces
    (". 가 나 .", "가 나"),  # leading / trailing "."
    ("가 . . . 나", ". 가 . 나 ."),
    ("x y x y x", "y x y x y"),
    ("가 나 다", "라 마 바"),  # nothing shared
    ("가", "가 나"),  # one word: no bigram
    ("  ", "가"),  # whitespace-only hypothesis: the empty word
    (".", "가"),  # no sentence: package raises, we give 0
]


@pytest.mark.parametrize(("hyp", "ref"), CRAFTED)
def test_parity_crafted(hyp, ref):
    expected = package_f1(hyp, ref)
    assert rouge_f1(hyp.split(" "), ref.split(" ")) == pytest.approx(expected, abs=1e-9)
    assert rouge_f1(ref.split(" "), hyp.split(" ")) == pytest.approx(package_f1(ref, hyp), abs=1e-9)


def test_parity_random_small_vocab():
    # Many short texts over a tiny vocabulary with "." and odd spacing: ties, repeats, empty words.
    rng = random.Random(7)
    pieces = ["가", "나", "다", "라", ".", " . ", "  "]
    for _ in range(1500):
        hyp = " ".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        ref = " ".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        assert rouge_f1([hyp], [ref]) == pytest.approx(package_f1(hyp, ref), abs=1e-9), (hyp, ref)


def perturb(tokens: list[str], rng: random.Random, kind: str) -> list[str]:
    if kind == "drop":  # drop about a fifth of the morphemes
        return [t for t in tokens if rng.random() > 0.2]
    if kind == "reorder":  # shuffle the sentences
        sentences = " ".join(tokens).split(" . ")
        rng.shuffle(sentences)
        return " . ".join(sentences).split()
    if kind == "dots":  # insert extra " . " pieces, some doubled
        out = []
        for t in tokens:
            out.append(t)
            if rng.random() < 0.15:
                out.extend([".", "."] if rng.random() < 0.3 else ["."])
        return out
    raise AssertionError(kind)


def test_parity_real_dev_pairs():
    pytest.importorskip("rouge")
    if not DEV_CSV.exists():
        pytest.skip(f"shared data not found at {DEV_CSV}")
    with DEV_CSV.open(encoding="utf-8") as f:
        summaries = [row["summary"] for row in csv.DictReader(f)]
    morphs = get_analyser("mecab")
    tokens = [morphs(s) for s in summaries[:81]]
    rng = random.Random(0)
    pairs = []
    for i in range(80):
        pairs.append((tokens[i], tokens[i + 1]))  # a different summary
        for kind in ("drop", "reorder", "dots"):
            pairs.append((perturb(tokens[i], rng, kind), tokens[i]))
    assert len(pairs) >= 200
    for hyp, ref in pairs:
        expected = package_f1(" ".join(hyp), " ".join(ref))
        assert rouge_f1(hyp, ref) == pytest.approx(expected, abs=1e-9), (hyp, ref)


# --------------------------------------------------------------------------------------------
# score_texts


def test_multi_reference_is_mean_not_max():
    # hyp "가 나 다" vs ref1 identical: F(1,1) x3; ref2 "가 나 라": R1 F(2/3,2/3), R2 F(1/2,1/2),
    # RL F(2/3,2/3); ref3 "마 바 사": 0 x3. Each metric is the mean over the three.
    refs = ["가 나 다", "가 나 라", "마 바 사"]
    result = score_texts({"a": "가 나 다"}, {"a": refs}, analyser="whitespace")
    r1 = (PERFECT + F(2 / 3, 2 / 3) + 0.0) / 3
    r2 = (PERFECT + F(1 / 2, 1 / 2) + 0.0) / 3
    rl = (PERFECT + F(2 / 3, 2 / 3) + 0.0) / 3
    assert result.rouge1 == pytest.approx(r1, abs=1e-12)
    assert result.rouge2 == pytest.approx(r2, abs=1e-12)
    assert result.rougeL == pytest.approx(rl, abs=1e-12)
    assert result.score == pytest.approx((r1 + r2 + rl) / 3 * 100, abs=1e-9)
    assert result.rouge1 < 0.6  # the max over references would be ~1
    assert result.per_row == (RowScore("a", result.rouge1, result.rouge2, result.rougeL),)


def test_average_over_rows_matches_manual():
    preds = {"a": "가 나 다", "b": "라 마"}
    refs = {"a": ["가 나", "다 가", "가 나 다"], "b": ["라 마 바", "마", "바 사"]}
    result = score_texts(preds, refs, analyser="whitespace")
    manual = {}
    for fname, ref_list in refs.items():
        each = [rouge_f1(ws(preds[fname]), ws(r)) for r in ref_list]
        manual[fname] = [sum(m[k] for m in each) / 3 for k in range(3)]
    for k, name in enumerate(("rouge1", "rouge2", "rougeL")):
        expected = (manual["a"][k] + manual["b"][k]) / 2
        assert getattr(result, name) == pytest.approx(expected, abs=1e-12)
    assert result.rows == 2
    row = result.per_row[0]
    assert row.score == pytest.approx((row.rouge1 + row.rouge2 + row.rougeL) / 3 * 100)
    assert result.to_dict() == {"score": result.score, "rouge1": result.rouge1,
                                "rouge2": result.rouge2, "rougeL": result.rougeL, "rows": 2}


def test_rows_matched_by_fname_not_order():
    refs = {"x": ["가 나 다"], "y": ["라 마 바"], "z": ["사 아"]}
    ordered = {"x": "가 나", "y": "라 바", "z": "아"}
    shuffled = {"z": "아", "x": "가 나", "y": "라 바"}
    a = score_texts(ordered, refs, analyser="whitespace")
    b = score_texts(shuffled, refs, analyser="whitespace")
    assert a == b
    assert [r.fname for r in b.per_row] == ["x", "y", "z"]  # references' order
    assert b.per_row[0].rouge1 == pytest.approx(F(1.0, 2 / 3), abs=1e-12)


def test_missing_and_extra_ids_raise():
    refs = {f"dev_{i}": ["가"] for i in range(8)}
    with pytest.raises(UserError, match=r"8 \(dev_0, dev_1, dev_2, dev_3, dev_4, \.\.\.\)"):
        score_texts({}, refs, analyser="whitespace")
    preds = {f"dev_{i}": "가" for i in range(8)}
    preds["test_1"] = "가"
    with pytest.raises(UserError, match=r"1 \(test_1\) fnames have predictions but no reference"):
        score_texts(preds, refs, analyser="whitespace")
    del preds["dev_3"]
    with pytest.raises(UserError, match=r"1 \(dev_3\) fnames have references but no prediction"):
        score_texts(preds, refs, analyser="whitespace")
    with pytest.raises(UserError, match="empty list of references"):
        score_texts({"a": "가"}, {"a": []}, analyser="whitespace")
    with pytest.raises(UserError, match="nothing to score"):
        score_texts({}, {}, analyser="whitespace")


def test_empty_prediction_scores_zero_others_unaffected():
    refs = {"a": ["가 나 다"], "b": ["라 마 바", "라 마"]}
    alone = score_texts({"b": "라 마"}, {"b": refs["b"]}, analyser="whitespace")
    for empty in ("", "   ", ".", "<pad><pad></s>"):
        result = score_texts({"a": empty, "b": "라 마"}, refs, analyser="whitespace")
        assert result.per_row[0] == RowScore("a", 0.0, 0.0, 0.0)
        assert result.per_row[1] == alone.per_row[0]
        assert result.rouge1 == pytest.approx(alone.rouge1 / 2, abs=1e-12)


def test_special_strings_are_stripped():
    assert strip_special("<s> 가  나<pad>다 </s><pad><pad>") == "가 나 다"
    assert strip_special("<usr>가</s>") == "가"
    assert set(SPECIAL_STRINGS) == {"<usr>", "<s>", "</s>", "<pad>"}
    refs = {"a": ["민수는 학교에 갔다."]}
    clean = score_texts({"a": "민수는 학교에 갔다."}, refs)
    noisy = score_texts({"a": "<s>민수는 학교에 갔다.</s><pad><pad>"}, refs)
    assert noisy == clean


@pytest.mark.parametrize("analyser", ["mecab", "whitespace"])
def test_identical_predictions_and_references_give_100(analyser):
    # The package's 1e-8 makes each F1 0.999999995, so the score is 99.9999995: within 1e-6 of
    # 100 and displayed as 100.00.
    texts = {"a": "#Person1#은 회의에 늦었습니다. 다음에는 일찍 오겠다고 합니다.", "b": "민수 는 학교 에 갔 다"}
    result = score_texts(texts, {k: [v, v, v] for k, v in texts.items()}, analyser=analyser)
    assert result.score == pytest.approx(PERFECT * 100, abs=1e-9)
    assert abs(result.score - 100) < 1e-6
    assert round(result.score, 2) == 100.0


def test_unknown_analyser_raises():
    with pytest.raises(UserError, match="mecab, kiwi, whitespace"):
        get_analyser("okt")
    with pytest.raises(UserError, match="'okt'"):
        score_texts({"a": "가"}, {"a": ["가"]}, analyser="okt")


def test_analysers_cached_and_working():
    assert ANALYSERS == ("mecab", "kiwi", "whitespace")
    assert get_analyser("mecab") is get_analyser("mecab")
    assert get_analyser("whitespace")(" 가  나 ") == ["가", "나"]
    assert isinstance(score_texts({"a": "가"}, {"a": ["가"]}, analyser="whitespace"), Score)


def test_kiwi_analyser():
    pytest.importorskip("kiwipiepy")
    assert get_analyser("kiwi")("나는 사과를 좋아한다")[:4] == ["나", "는", "사과", "를"]


def test_old_tokenizer_names_still_work():
    """train.py, predict.py, llm/summarize.py... call get_tokenizer and score_texts(tokenizer=...)."""
    assert get_tokenizer is get_analyser and TOKENIZERS == ANALYSERS
    preds, refs = {"a": "가 나 다", "b": "라 마"}, {"a": ["가 나 라"], "b": ["라 바"]}
    expected = score_texts(preds, refs, analyser="whitespace")
    r1 = rl = (F(2 / 3, 2 / 3) + F(1 / 2, 1 / 2)) / 2  # a: 2 of 3 words, LCS 가 나; b: 1 of 2
    r2 = (F(1 / 2, 1 / 2) + 0) / 2  # a: 가나 shared of 2 bigrams; b: none
    assert expected.score == pytest.approx((r1 + r2 + rl) / 3 * 100, abs=1e-9)
    assert score_texts(preds, refs, tokenizer="whitespace") == expected
    assert score_texts(preds, refs, "whitespace") == expected
    assert score_texts(preds, refs, analyser="whitespace", tokenizer="whitespace") == expected
    with pytest.raises(TypeError, match="analyser= only"):
        score_texts(preds, refs, analyser="whitespace", tokenizer="mecab")
    with pytest.raises(UserError, match="'okt'"):
        score_texts(preds, refs, tokenizer="okt")
