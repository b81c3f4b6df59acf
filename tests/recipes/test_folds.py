"""dsum train --folds K: the split (disjoint, covering, stratified), the fold runs, OOF score, rerun."""

import json
import shutil
import sys
from collections import Counter

import pandas as pd
import pytest
from conftest import REPO, tiny_overrides

from dsum.config import load_config
from dsum.data.files import read_predictions
from dsum.util.errors import UserError
from dsum.verbs.folds import OTHER, assign_folds, fold_config, plan_folds, strata, train_folds
from dsum.metric.rouge import score_texts
from dsum.runs.directory import base_run_dir, mark_status
from dsum.data.submission import check_submission

SAMPLE = REPO / "data" / "sample"


def test_folds_are_disjoint_covering_stratified_and_seeded():
    topics = ["a"] * 9 + ["b"] * 6 + ["c"] * 4 + ["d", "d", "e", None]
    folds = assign_folds(topics, 3, seed=7)
    assert sorted(Counter(folds).values()) == [7, 8, 8]  # 23 rows: each row in exactly one fold; sizes differ by at most 1
    for topic, n in (("a", 9), ("b", 6)):
        assert sorted(Counter(f for f, t in zip(folds, topics) if t == topic).values()) == [n // 3] * 3
    assert max(Counter(f for f, t in zip(folds, topics) if t == "c").values()) == 2  # 4 rows over 3 folds: 2,1,1
    # The rare topics d, e and the row without one share the stratum "other" (4 rows ≥ K): spread over folds.
    assert strata(topics, 3)[-4:] == [OTHER] * 4
    assert len({f for f, t in zip(folds, topics) if t in ("d", "e", None)}) == 3
    assert assign_folds(topics, 3, seed=7) == folds
    assert assign_folds(topics, 3, seed=8) != folds


def test_a_small_other_stratum_joins_the_largest():
    assert strata(["a"] * 5 + ["b"] * 3 + ["z"], 3) == ["a"] * 5 + ["b"] * 3 + ["a"]
    with pytest.raises(UserError, match="at least 2 folds"):
        assign_folds(["a", "b"], 1, seed=0)


@pytest.mark.parametrize("include_dev, rows", [(False, 80), (True, 100)])
def test_fold_files_cover_the_pool(tmp_path, include_dev, rows):
    cfg = load_config(REPO / "configs/demo.yaml", tiny_overrides(tmp_path))
    parent, plan, _ = plan_folds(cfg, 4, include_dev)
    assert parent == tmp_path / "runs" / "demo-folds"
    held = [set(pd.read_csv(parent / "data" / f"fold-{k}" / "dev.csv")["fname"]) for k in range(1, 5)]
    assert sum(map(len, held)) == rows and len(set().union(*held)) == rows  # disjoint and covering
    assert [sorted(h) for h in held] == [sorted(f) for f in plan["folds"]]
    for k in range(1, 5):
        train = pd.read_csv(parent / "data" / f"fold-{k}" / "train.csv")
        assert set(train["fname"]).isdisjoint(held[k - 1]) and len(train) == rows - len(held[k - 1])
        assert list(train.columns) == ["fname", "dialogue", "summary", "topic"]
    assert ("dev_" in " ".join(set().union(*held))) == include_dev
    # The same settings find the same split; another seed is refused instead of mixing two splits.
    assert plan_folds(cfg, 4, include_dev)[1] == plan
    other = load_config(REPO / "configs/demo.yaml", tiny_overrides(tmp_path, "general.seed=1"))
    with pytest.raises(UserError, match="another split or config"):
        plan_folds(other, 4, include_dev)


def test_fold_config_points_at_the_fold_files(tmp_path):
    cfg = load_config(REPO / "configs/demo.yaml", tiny_overrides(tmp_path))
    fold = fold_config(cfg, tmp_path / "demo-folds", 2)
    assert fold.data.train == [tmp_path / "demo-folds" / "data" / "fold-2" / "train.csv"]
    assert fold.data.dev == tmp_path / "demo-folds" / "data" / "fold-2" / "dev.csv"
    assert base_run_dir(fold) == tmp_path / "demo-folds" / "fold-2"
    assert fold.tracking.group == "demo-folds" and fold.data.test == cfg.data.test and fold.training == cfg.training


def test_folds_train_score_submit_and_rerun_only_unfinished(tmp_path, monkeypatch):
    cfg = load_config(REPO / "configs/demo.yaml", tiny_overrides(tmp_path, "training.epochs=1", "generation.max_new_tokens=12"))
    parent = train_folds(cfg, 2)
    summary = json.loads((parent / "folds.json").read_text())
    oof = pd.read_csv(parent / "oof_predictions.csv", keep_default_na=False)
    assert len(oof) == 80 and set(oof["fold"]) == {1, 2}
    gold = pd.read_csv(SAMPLE / "train.csv", keep_default_na=False)
    expected = score_texts(dict(zip(oof["fname"], oof["prediction"])), {f: (s,) for f, s in zip(gold["fname"], gold["summary"])},
                           analyser="mecab")
    assert summary["oof"]["score"] == pytest.approx(expected.score)
    fold_scores = [f["score"] for f in summary["oof"]["folds"]]
    assert fold_scores == [json.loads((parent / f"fold-{k}" / "metrics.json").read_text())["dev"]["score"] for k in (1, 2)]
    assert summary["oof"]["fold_min"] == min(fold_scores) and summary["oof"]["fold_max"] == max(fold_scores)
    # Per row the ensemble chose one of the fold models' summaries (MBR), in a well-formed submission.
    assert check_submission(parent / "submission.csv", cfg.data.test, cfg.data.sample_submission) == []
    chosen = read_predictions(parent / "submission.csv")
    folds = [read_predictions(parent / f"fold-{k}" / "submission.csv") for k in (1, 2)]
    assert all(text in (folds[0][f], folds[1][f]) for f, text in chosen.items())

    # A rerun after a crash: finished folds are skipped; fold 2, stopped after its last checkpoint, is resumed...
    (parent / "fold-2" / "metrics.json").unlink()
    mark_status(parent / "fold-2", "failed")
    fold1 = (parent / "fold-1" / "metrics.json").stat().st_mtime_ns
    train_module = sys.modules["dsum.verbs.train"]  # `dsum.verbs.train` is also the function the package exports
    calls, real_train = [], train_module.train
    monkeypatch.setattr(train_module, "train", lambda c, **kw: calls.append((c.general.run_name, kw)) or real_train(c, **kw))
    train_folds(cfg, 2)
    assert calls == [("fold-2", {"resume": parent / "fold-2"})]
    assert (parent / "fold-2" / "metrics.json").is_file()
    # ... and, stopped before any checkpoint, trained again from the start.
    (parent / "fold-2" / "metrics.json").unlink()
    mark_status(parent / "fold-2", "failed")
    shutil.rmtree(parent / "fold-2" / "checkpoints")
    calls.clear()
    train_folds(cfg, 2)
    assert calls == [("fold-2", {})]
    assert (parent / "fold-2" / "metrics.json").is_file() and not (parent / "fold-2-2").exists()
    assert (parent / "fold-1" / "metrics.json").stat().st_mtime_ns == fold1

    # dsum inspect on the K-fold parent: the out-of-fold rows, their dialogues and topics from data/fold-k/dev.csv.
    import dsum

    page = dsum.inspect(parent)
    assert page.html == parent / "inspect.html" and page.json.is_file()
    oof = pd.read_csv(parent / "oof_predictions.csv", keep_default_na=False)
    assert page.data["rows_total"] == 80 and page.data["systems"][0]["kind"] == "folds"
    assert page.data["systems"][0]["score"] == pytest.approx(json.loads((parent / "folds.json").read_text())["oof"]["score"], rel=1e-12)
    assert {r[1] for r in page.data["table"]["rows"]} == set(gold[gold["fname"].isin(oof["fname"])]["topic"])
