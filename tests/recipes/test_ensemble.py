"""MBR over candidates with the board's Korean ROUGE, and the bootstrap that tells a gain from noise."""

import random

import pandas as pd
import pytest
from conftest import REPO, run_dsum

from dsum.metric.bootstrap import paired_bootstrap, topic_halves
from dsum.data.files import read_examples, read_predictions, reference_map
from dsum.metric.mbr import Source, combine, mbr, score_against
from dsum.verbs.ensemble import read_sources
from dsum.util.errors import UserError
from dsum.metric.rouge import get_analyser, rouge_f1, score_texts, strip_special
from dsum.verbs.predict import write_candidates
from dsum.data.submission import write_submission

DEV = REPO / "data/sample/dev.csv"


def _noisy(text: str, rng: random.Random, edits: int) -> str:
    """The text with `edits` words dropped or repeated: a plausible, slightly wrong candidate."""
    words = text.split()
    for _ in range(edits):
        i = rng.randrange(len(words))
        if rng.random() < 0.5 and len(words) > 3:
            words.pop(i)
        else:
            words.insert(i, words[rng.randrange(len(words))])
    return " ".join(words)


def test_mbr_picks_the_consensus_candidate():
    consensus = "#Person1#은 경찰에게 절도를 신고합니다."
    sources = [
        Source("odd", {"d0": "#Person2#는 내일 저녁에 영화를 보러 가자고 제안합니다.", "d1": "같은 요약"}),
        Source("close", {"d0": "#Person1#은 경찰에게 도둑을 신고합니다.", "d1": "같은 요약"}),
        Source("consensus", {"d0": consensus, "d1": "같은 요약"}),
        Source("near", {"d0": "#Person1#이 경찰에게 절도를 신고했습니다.", "d1": "같은 요약"}),
    ]
    result = mbr(sources)
    assert result.summaries == {"d0": consensus, "d1": "같은 요약"}
    assert [result.labels[k] for k in result.choice] == ["consensus", "odd"]  # a tie goes to the first source
    assert result.wins() == {"odd": 1, "close": 0, "consensus": 1, "near": 0}
    # The utility is the board score against each other candidate, summed.
    morphs = get_analyser("mecab")
    expected = sum(
        sum(rouge_f1(morphs(consensus), morphs(s.texts["d0"]))) / 3 * 100 for s in sources if s.label != "consensus"
    )
    assert result.utility[0] == pytest.approx(expected, rel=1e-12)
    # Four identical candidates: each agrees with the three others at the board's 0.999999995 per metric.
    assert result.utility[1] == pytest.approx(3 * 99.9999995)


def test_mbr_equals_a_plain_loop_over_the_metric_on_real_dev_rows():
    examples = read_examples(DEV, require_summary=True)
    rng = random.Random(0)
    references = reference_map(examples)
    sources = [Source("gold", {e.fname: e.summaries[0] for e in examples}, 0.5)]
    for k, edits in enumerate((2, 4, 6)):
        sources.append(Source(f"noisy{k}", {e.fname: _noisy(e.summaries[0], rng, edits) for e in examples}, 1.0 + k))
    # One row's candidates copied from another row: far from the consensus.
    sources.append(Source("wrong", {e.fname: examples[(i + 1) % len(examples)].summaries[0] for i, e in enumerate(examples)}))
    weights = (1.0, 2.0, 1.5)
    result = mbr(sources, weights)

    morphs = get_analyser("mecab")
    for i, e in enumerate(examples):
        texts = [strip_special(s.texts[e.fname]) for s in sources]
        utilities = [
            sum(s.weight * combine(rouge_f1(morphs(c), morphs(texts[j])), weights) for j, s in enumerate(sources) if j != k)
            for k, c in enumerate(texts)
        ]
        best = max(range(len(texts)), key=lambda k: (utilities[k], -k))
        assert result.choice[i] == best, e.fname
        assert result.utility[i] == pytest.approx(utilities[best], rel=1e-12)
    assert "wrong" not in {result.labels[k] for k in result.choice}

    report = score_against(result, references, {e.fname: e.topic for e in examples})
    for s in sources:  # each source's score is the board's, as `dsum score` computes it
        assert report.scores[s.label] == pytest.approx(score_texts(s.texts, references).score, rel=1e-12)
    assert report.mbr == pytest.approx(score_texts(result.summaries, references).score, rel=1e-12)
    assert report.oracle == pytest.approx(100 * 0.999999995)  # the gold source is a candidate of every row
    assert report.scores["wrong"] < report.scores["noisy2"] < report.mbr
    assert report.halves is not None and report.halves.topics == len({e.topic for e in examples})


def test_bootstrap_of_a_run_against_itself_contains_zero():
    rng = random.Random(1)
    a = {f"dev_{i}": rng.uniform(20, 80) for i in range(499)}
    same = paired_bootstrap(a, dict(a))
    assert (same.diff, same.low, same.high, same.b_wins, same.rows) == (0.0, 0.0, 0.0, 0.0, 499)

    b = {f: v + rng.gauss(0, 5) for f, v in a.items()}  # noise only
    noisy = paired_bootstrap(a, b)
    assert noisy.low < 0 < noisy.high and 0.0 < noisy.b_wins < 1.0
    assert noisy == paired_bootstrap(a, b)  # seeded
    better = paired_bootstrap(a, {f: v + 2.0 for f, v in a.items()})
    assert better.diff == pytest.approx(2.0) and better.low == pytest.approx(2.0) and better.b_wins == 1.0
    with pytest.raises(UserError, match="share no scored dev row"):
        paired_bootstrap(a, {"test_0": 1.0})


def test_topic_halves_spread():
    # Two topics: every split puts one in each half, so the gap is ± the difference of their means.
    scores = {"a1": 40.0, "a2": 50.0, "b1": 60.0, "b2": 70.0}
    topics = {"a1": "x", "a2": "x", "b1": "y", "b2": "y"}
    halves = topic_halves(scores, topics, splits=200)
    assert halves.mean_gap == pytest.approx(20.0) and halves.score == pytest.approx(55.0)
    assert (halves.low, halves.high) == (pytest.approx(-20.0), pytest.approx(20.0))
    flat = topic_halves({f"r{i}": 50.0 for i in range(10)}, {f"r{i}": f"t{i}" for i in range(10)})
    assert flat.mean_gap == 0.0 and flat.topics == 10
    with pytest.raises(UserError, match="at least 2 topics"):
        topic_halves(scores, {"a1": "x"})


def test_candidates_file_is_read_as_one_source_per_rank(tmp_path):
    path = write_candidates(tmp_path / "dev_submission_candidates.csv", {"d0": ["가 나", "가 다"], "d1": ["라\n마", "바"]})
    assert pd.read_csv(path).values.tolist() == [
        ["d0", 1, "beam", "가 나"], ["d0", 2, "beam", "가 다"], ["d1", 1, "beam", "라 마"], ["d1", 2, "beam", "바"]]
    other = write_submission(tmp_path / "other.csv", {"d0": "가 나", "d1": "바"}, ["d0", "d1"])
    sources = read_sources([path, other], [2.0, 1.0])
    assert [(s.label, s.weight, s.texts) for s in sources] == [
        ("dev_submission_candidates#1", 2.0, {"d0": "가 나", "d1": "라 마"}),
        ("dev_submission_candidates#2", 2.0, {"d0": "가 다", "d1": "바"}),
        ("other", 1.0, {"d0": "가 나", "d1": "바"}),
    ]
    short = write_submission(tmp_path / "short.csv", {"d0": "가"}, ["d0"])
    with pytest.raises(UserError, match="hold different rows"):
        read_sources([path, short])


def test_cli_ensemble_mbr_with_gold_writes_choice_rows_and_record(tmp_path):
    examples = read_examples(DEV, require_summary=True)
    rng = random.Random(2)
    paths = []
    for k, edits in enumerate((1, 3, 8)):
        predictions = {e.fname: _noisy(e.summaries[0], rng, edits) for e in examples}
        paths.append(str(write_submission(tmp_path / f"model{k}.csv", predictions, [e.fname for e in examples])))
    out = tmp_path / "mbr.csv"
    result = run_dsum("ensemble", "mbr", *paths, "--out", str(out), "--gold", str(DEV), "--weights", "1,2,1",
                      env={"COLUMNS": "120"})
    assert result.returncode == 0, result.stderr
    chosen = read_predictions(out)
    rows = pd.read_csv(tmp_path / "mbr_rows.csv")
    assert list(chosen) == [e.fname for e in examples] == rows["fname"].tolist()
    for fname, source in zip(rows["fname"], rows["source"]):
        assert chosen[fname] == read_predictions(tmp_path / f"{source}.csv")[fname]
    mbr_score = score_texts(chosen, reference_map(examples)).score
    assert rows["score"].mean() == pytest.approx(mbr_score)
    assert (rows["oracle"] >= rows[[f"score:model{k}" for k in range(3)]].max(axis=1) - 1e-9).all()
    assert f"{mbr_score:.2f}" in result.stdout and "MBR wins" in result.stdout and "topic halves" in result.stdout
    record = (tmp_path / "mbr_record.md").read_text()
    assert f"| MBR | {mbr_score:.2f} |" in record and "95% interval" in record

    bad = run_dsum("ensemble", "mbr", *paths, "--out", str(out), "--source-weights", "1,2")
    assert bad.returncode == 2 and "--source-weights '1,2' has 2 values; give 3" in bad.stderr
