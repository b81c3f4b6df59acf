"""`dsum inspect` on prediction files built by hand: each error flag, the highlighted matches against the
scorer's own counts, buckets and the bootstrap against `dsum score`, and texts that hold HTML."""

import json
import re

import pandas as pd
import pytest
from conftest import REPO, run_dsum

from dsum import score
from dsum.metric.bootstrap import paired_bootstrap
from dsum.metric.rouge import Analysed, strip_special
from dsum.report import inspect_align as align
from dsum.report.inspect_flags import row_flags

SAMPLE_DEV = REPO / "data" / "sample" / "dev.csv"

DIALOGUE = ("#Person1#: 제 전화번호는 #PhoneNumber#예요. 내일 연락 주세요.\n"
            "#Person2#: 알겠어요. 내일 다시 연락할게요.")
REFERENCE = "#Person1#은 #Person2#에게 자신의 전화번호 #PhoneNumber#를 알려주고, 두 사람은 내일 다시 연락하기로 한다."
OK = "#Person1#은 #Person2#에게 전화번호 #PhoneNumber#를 알려주고 내일 연락하기로 한다."

# fname -> (prediction, the flags it must raise, exactly)
CASES = {
    "ok": (OK, set()),
    "empty": ("", {"empty"}),
    "special": (OK + "</s><unused68><|im_end|>", {"special_tokens"}),
    "cut": ("#Person1#은 #Person2#에게 전화번호 #PhoneNumber#를 알려주고 내일", {"no_sentence_end"}),
    "repeat": ("#Person1#은 #Person2#에게 #PhoneNumber#를 알려주고 다시 다시 다시 연락한다.", {"repetition"}),
    "placeholder": ("A는 B에게 전화번호 #PhoneNumber#를 알려주고 내일 연락하기로 한다.", {"person_missing", "placeholder"}),
    "foreign_tag": ("#Person3#은 #Person2#에게 전화번호 #PhoneNumber#를 알려주고 내일 연락하기로 한다.", {"person_not_in_dialogue"}),
    "name": ("김민수는 #Person2#에게 전화번호 #PhoneNumber#를 알려주고 내일 연락하기로 한다.", {"name_for_tag"}),
    "pii_dropped": ("#Person1#은 #Person2#에게 자기 전화번호를 알려주고 내일 연락하기로 한다.", {"pii_dropped"}),
    "pii_invented": ("#Person1#은 #Person2#에게 #PhoneNumber#와 #Address#를 알려주고 내일 연락한다.", {"pii_invented"}),
    "latin": ("#Person1#은 #Person2#에게 phone 번호 #PhoneNumber#를 알려주고 내일 연락하기로 한다.", {"non_hangul"}),
    "short": ("#Person1#이 #Person2#에게 번호를 준다.", {"pii_dropped", "too_short"}),
    "long": (OK + " 두 사람은 공원에서 만나 점심을 먹고 영화를 본 뒤 서점에 들러 책을 사고 카페에서 이야기를 나누며 "
             "주말 계획을 세우고 저녁에는 시장에서 장을 보며 요리를 함께 한 후 각자 집으로 돌아간다.", {"too_long"}),
}


def _write(tmp_path, cases=CASES):
    dev = pd.DataFrame({"fname": list(cases), "dialogue": DIALOGUE, "summary": REFERENCE, "topic": "전화"})
    pred = pd.DataFrame({"fname": list(cases), "summary": [p for p, _ in cases.values()]})
    dev.to_csv(tmp_path / "dev.csv", index=False)
    pred.to_csv(tmp_path / "pred.csv", index=False)
    return tmp_path / "pred.csv", tmp_path / "dev.csv"


def test_each_flag_is_counted_on_the_rows_that_hold_it(tmp_path):
    pred, dev = _write(tmp_path)
    result = run_dsum("inspect", str(pred), "--dev", str(dev), "--out", str(tmp_path / "page.html"))
    assert result.returncode == 0, result.stderr
    assert f"page: {tmp_path / 'page.html'}" in result.stdout
    data = json.loads((tmp_path / "page.json").read_text())
    assert {f: set(d["systems"][0]["flags"]) for f, d in data["details"].items()} == {f: flags for f, (_, flags) in CASES.items()}
    counts = {f["flag"]: f["counts"][0] for f in data["flags"]}
    expected = {flag: sum(flag in flags for _, flags in CASES.values()) for flag in counts}
    assert counts == expected and counts["pii_dropped"] == 2 and counts["max_new_tokens"] == 0
    assert data["details"]["special"]["systems"][0]["flags"]["special_tokens"] == "</s> <unused68> <|im_end|>"


def test_a_latin_name_written_in_hangul():
    reference = "#Person1#은 Jayden에게 돈을 빌리려 하지만 Jayden도 여유가 없다."
    dialogue = "#Person1#: 저기, Jayden... 나 부탁 하나 해줄 수 있어?\n#Person2#: 뭐야?"
    assert row_flags("#Person1#은 제이든에게 돈을 빌리려 하지만 제이든도 여유가 없다.", [reference], dialogue) == {
        "name_spelling": "reference Jayden, prediction 제이든"}
    assert row_flags("#Person1#은 Jayden에게 돈을 빌리려 하지만 그도 여유가 없다.", [reference], dialogue) == {}


def test_cut_at_max_new_tokens_needs_the_token_count():
    assert row_flags(OK, [REFERENCE], DIALOGUE, tokens=30, max_new_tokens=30) == {"max_new_tokens": "30 tokens, max_new_tokens 30"}
    assert row_flags(OK, [REFERENCE], DIALOGUE, tokens=29, max_new_tokens=30) == {}


def test_highlighted_matches_are_the_scorers_overlaps():
    """On every sample dev row, against a prediction that shares part of it: the distinct unigram-, bigram-
    and LCS-highlighted words are the overlaps the board's ROUGE counts, and each word sits at its place."""
    dev = pd.read_csv(SAMPLE_DEV, dtype=str, keep_default_na=False)
    analysed = Analysed("mecab")
    inverse = None
    for k, (reference, dialogue) in enumerate(zip(dev["summary"], dev["dialogue"])):
        prediction = strip_special(reference[: len(reference) // 2] + " " + dialogue[:80] if k % 2 else dialogue[:150])
        hyp, ref = analysed.prepared(prediction), analysed.prepared(reference)
        inverse = {v: w for w, v in analysed.vocab.items()}
        h, r = align.scorer_words(prediction, analysed.morphs), align.scorer_words(reference, analysed.morphs)
        hyp_bits, ref_bits = align.match_classes(h, r)
        assert set(h.words) == {inverse[w] for w in hyp.unigrams}
        assert {w for w, b in zip(h.words, hyp_bits) if b & align.UNIGRAM} == {inverse[w] for w in hyp.unigrams & ref.unigrams}
        assert {w for w, b in zip(r.words, ref_bits) if b & align.UNIGRAM} == {inverse[w] for w in hyp.unigrams & ref.unigrams}
        bigrams = {(a, b) for i, (a, b) in enumerate(zip(h.words, h.words[1:])) if hyp_bits[i] & hyp_bits[i + 1] & align.BIGRAM
                   and (a, b) in set(zip(r.words, r.words[1:]))}
        assert len(bigrams) == len(hyp.bigrams & ref.bigrams)
        lcs = {w for w, b in zip(h.words, hyp_bits) if b & align.LCS}
        rl = analysed.rouge(prediction, reference)[2]
        p, rc = len(lcs) / len(hyp.unigrams), len(lcs) / len(ref.unigrams)
        assert 2.0 * ((p * rc) / (p + rc + 1e-8)) == rl  # the union the scorer's ROUGE-L counts
        for word, span in zip(h.words, h.spans):  # "" (a "." piece holding only spaces) has no place
            assert (span is not None and prediction[span[0]:span[1]] == word) if word else span is None


def _two_files(tmp_path):
    dev = pd.read_csv(SAMPLE_DEV, dtype=str, keep_default_na=False)
    a = [s[: len(s) * 2 // 3] for s in dev["summary"]]
    b = [s if i % 3 else d[:100] for i, (s, d) in enumerate(zip(dev["summary"], dev["dialogue"]))]
    for name, summaries in (("a", a), ("b", b)):
        pd.DataFrame({"fname": dev["fname"], "summary": summaries}).to_csv(tmp_path / f"{name}.csv", index=False)
    return dev


def test_buckets_and_bootstrap_equal_dsum_score_and_the_paired_bootstrap(tmp_path):
    dev = _two_files(tmp_path)
    result = run_dsum("inspect", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--dev", str(SAMPLE_DEV),
                      "--out", str(tmp_path / "ab.html"))
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "ab.json").read_text())
    scores = [score(tmp_path / f"{n}.csv", SAMPLE_DEV) for n in ("a", "b")]
    for system, s in zip(data["systems"], scores):
        assert system["score"] == pytest.approx(s.score, rel=1e-12)
        assert (system["rouge1"], system["rouge2"], system["rougeL"]) == pytest.approx((s.rouge1, s.rouge2, s.rougeL), rel=1e-12)
    per_row = [{r.fname: r.score for r in s.per_row} for s in scores]
    boot = paired_bootstrap(*per_row)
    assert data["comparison"]["bootstrap"] == boot.to_dict()
    diff = {f: per_row[1][f] - per_row[0][f] for f in per_row[0]}
    assert (data["comparison"]["wins"], data["comparison"]["losses"]) == (
        sum(d > 0 for d in diff.values()), sum(d < 0 for d in diff.values()))
    assert data["comparison"]["b_beats_a"][0] == max(diff, key=diff.get)

    # Each bucket's score is `dsum score` on its rows; its B − A is the paired bootstrap on them.
    rows = {r[0]: r for r in data["table"]["rows"]}
    by_turns = [b for b in data["buckets"] if b["by"] == "turns"]
    assert sum(b["rows"] for b in by_turns) == len(dev) and len(by_turns) >= 3
    topic_buckets = [b for b in data["buckets"] if b["by"] == "topic"]
    for bucket in by_turns[:2] + topic_buckets[:1]:
        members = _members(bucket, rows, data)
        assert len(members) == bucket["rows"]
        subset = dev[dev["fname"].isin(members)]
        subset.to_csv(tmp_path / "gold_subset.csv", index=False)
        for k, name in enumerate(("a", "b")):
            pred = pd.read_csv(tmp_path / f"{name}.csv", dtype=str, keep_default_na=False)
            pred[pred["fname"].isin(members)].to_csv(tmp_path / "pred_subset.csv", index=False)
            cli = run_dsum("score", "--pred", str(tmp_path / "pred_subset.csv"), "--gold", str(tmp_path / "gold_subset.csv"), "--json")
            assert bucket["systems"][k]["score"] == pytest.approx(json.loads(cli.stdout)["score"], rel=1e-12)
        assert bucket["diff"]["diff"] == paired_bootstrap({f: per_row[0][f] for f in members},
                                                          {f: per_row[1][f] for f in members}).diff


def _members(bucket, rows, data):
    columns = data["table"]["columns"]
    if bucket["by"] == "topic":
        return [f for f, r in rows.items() if r[1] == bucket["label"]]
    turns = columns.index("turns")
    label = bucket["label"]
    if label.startswith("≤"):
        return [f for f, r in rows.items() if r[turns] <= float(label[1:])]
    low, high = (float(x) for x in label.split("–"))
    return [f for f, r in rows.items() if low < r[turns] <= high]


HOSTILE = '</script><script>document.title="pwned"</script><b id="bold">굵게</b> & <!-- 주석'


def test_texts_holding_html_cannot_break_the_page(tmp_path):
    cases = {"ok": (OK, set()), "hostile": (HOSTILE, set())}
    pred, dev = _write(tmp_path, cases)
    result = run_dsum("inspect", str(pred), "--dev", str(dev), "--out", str(tmp_path / "page.html"))
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "page.html").read_text()
    assert "</script><script>document" not in page and '<b id="bold">' not in page
    embedded = re.search(r'<script type="application/json" id="inspect-data">(.*?)</script>', page, re.S).group(1)
    data = json.loads(embedded)
    assert data["details"]["hostile"]["systems"][0]["raw"] == HOSTILE
    assert data == json.loads((tmp_path / "page.json").read_text())


def test_a_predictions_file_without_dialogues_needs_the_dev_file(tmp_path):
    pred, _ = _write(tmp_path)
    result = run_dsum("inspect", str(pred))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {pred} holds no dialogues and references: give the dev file they belong to with --dev data/dev.csv")
    bad_out = run_dsum("inspect", str(pred), "--dev", str(tmp_path / "dev.csv"), "--out", str(tmp_path / "page.txt"))
    assert bad_out.returncode == 2 and "give the page an .html name" in bad_out.stderr
    assert not (tmp_path / "page.txt").exists() and not (tmp_path / "page.json").exists()


def test_two_systems_must_hold_the_same_rows(tmp_path):
    pred, dev = _write(tmp_path)
    fewer = pd.read_csv(pred, dtype=str, keep_default_na=False).iloc[:-2]
    fewer.to_csv(tmp_path / "fewer.csv", index=False)
    result = run_dsum("inspect", str(pred), str(tmp_path / "fewer.csv"), "--dev", str(dev), "--out", str(tmp_path / "ab.html"))
    assert result.returncode == 2 and not (tmp_path / "ab.html").exists()
    assert result.stderr.strip() == ("error: pred and fewer do not hold the same dev rows (2 only in pred, 0 only in fewer): "
                                     "compare systems that predicted the same dev file")


def test_beyond_the_cap_only_worst_best_and_flagged_rows_carry_texts(tmp_path, monkeypatch):
    """What a 12,457-row page embeds, on a small cap: every row in the table, texts for the worst, the best
    and the flagged rows (lowest scores first)."""
    import dsum
    import dsum.report.inspect_data as inspect_data

    for name, value in (("DETAIL_ALL", 5), ("DETAIL_WORST", 2), ("DETAIL_BEST", 1), ("DETAIL_FLAGGED", 3)):
        monkeypatch.setattr(inspect_data, name, value)
    pred, dev = _write(tmp_path)
    data = dsum.inspect(pred, dev=dev, out=tmp_path / "capped.html").data
    columns = data["table"]["columns"]
    rows = data["table"]["rows"]
    assert len(rows) == len(CASES)
    by_score = [r[0] for r in sorted(rows, key=lambda r: r[columns.index("score0")])]
    flagged = [f for f in by_score if CASES[f][1]]
    expected = set(by_score[:2]) | {by_score[-1]} | set(flagged[:3])
    assert set(data["details"]) == expected
    assert data["details_note"].startswith(f"texts and highlights of {len(expected)} of {len(CASES)} rows are embedded")
