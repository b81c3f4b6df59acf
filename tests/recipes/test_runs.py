"""`dsum runs`, run status and record.md on two real tiny training runs (CPU, offline)."""

import json
import os
import shutil
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, run_dsum, tiny_overrides
from matplotlib.image import imread

from dsum.model import generate
from dsum.config import load_config
from dsum.data.files import read_predictions
from dsum.verbs.ensemble import run_mbr
from dsum.util.errors import UserError
from dsum.verbs.predict import predict
from dsum.runs.record import resolve_parent, write_record
from dsum.runs.directory import mark_status
from dsum.runs.read import compare_runs, list_runs, run_status
from dsum.verbs.train import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Two finished runs: demo (lr 0.003) and demo-2 (lr 0.001, parent demo)."""
    root = tmp_path_factory.mktemp("two_runs")
    demo = REPO / "configs/demo.yaml"
    assert train(load_config(demo, tiny_overrides(root))).name == "demo"
    child = tiny_overrides(root, "training.learning_rate=0.001", "general.parent=demo", "general.notes=lower learning rate")
    assert train(load_config(demo, child)).name == "demo-2"
    return root / "runs"


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _copy_run(src: Path, dst: Path) -> Path:
    """A run directory without its checkpoints (enough for status, listing and records)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoint*"))
    return dst


def test_runs_json_lists_both_runs_best_first(runs):
    result = run_dsum("runs", "--dir", str(runs), "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    scores = {name: _metrics(runs / name)["dev"]["score"] for name in ("demo", "demo-2")}
    assert [r["name"] for r in rows] == sorted(scores, key=scores.get, reverse=True)
    for row in rows:
        assert row["score"] == scores[row["name"]]
        assert row["status"] == "finished" and row["kind"] == "train"
        assert row["model"] == "tiny-bart" and row["batch_size"] == 8 and row["epochs"] == 2
        assert row["best_epoch"] == _metrics(runs / row["name"])["best_epoch"]
    assert {r["name"]: r["learning_rate"] for r in rows} == {"demo": 0.003, "demo-2": 0.001}

    by_name = json.loads(run_dsum("runs", "--dir", str(runs), "--json", "--sort", "name").stdout)
    assert [r["name"] for r in by_name] == ["demo", "demo-2"]
    table = run_dsum("runs", "--dir", str(runs), env={"COLUMNS": "200"})
    assert table.returncode == 0
    assert f"{scores['demo']:.2f}" in table.stdout and f"{scores['demo-2']:.2f}" in table.stdout


def test_training_marks_status_and_writes_record(runs):
    for name in ("demo", "demo-2"):
        status = json.loads((runs / name / "status.json").read_text())
        assert status["status"] == "finished" and status["host"] == socket.gethostname()
        assert (runs / name / "record.md").is_file()


def test_status_running_crashed_failed(runs, tmp_path):
    killed = _copy_run(runs / "demo", tmp_path / "runs" / "killed")
    (killed / "metrics.json").unlink()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    status = {"status": "running", "pid": int(dead.stdout), "host": socket.gethostname(), "started": "2026-01-02T03:04:05+00:00"}
    (killed / "status.json").write_text(json.dumps(status))
    assert run_status(killed) == "crashed"

    rows = json.loads(run_dsum("runs", "--dir", str(tmp_path / "runs"), "--json").stdout)
    assert [(r["name"], r["status"], r["score"], r["date"]) for r in rows] == [("killed", "crashed", None, "2026-01-02 03:04")]

    mark_status(killed, "running")  # this test's process: alive on this host
    written = json.loads((killed / "status.json").read_text())
    assert written["pid"] == os.getpid() and written["started"] == "2026-01-02T03:04:05+00:00"
    assert run_status(killed) == "running"
    (killed / "status.json").write_text(json.dumps({**written, "host": "another-machine"}))
    assert run_status(killed) == "running?"
    mark_status(killed, "failed")
    assert run_status(killed) == "failed"
    mark_status(killed, "finished")
    assert run_status(killed) == "finished"


def test_runs_table_at_80_columns_keeps_status_and_date_whole(tmp_path):
    """The default terminal width: the name and model fold, status and date never get cut."""
    runs = tmp_path / "runs"
    cfg = load_config(REPO / "configs/kobart.yaml")  # model digit82/kobart-summarization
    config = cfg.to_yaml()
    started = f"{datetime.now().year}-11-29T14:05:00+09:00"
    name = "kobart-summarization_v1_lr5e-05_bs16_ep20"
    for run, state, pid in ((name, "finished", os.getpid()), (f"{name}-2", "running", os.getpid()), (f"{name}-3", "running", -1)):
        (runs / run).mkdir(parents=True)
        (runs / run / "config.yaml").write_text(config)
        (runs / run / "status.json").write_text(json.dumps(
            {"status": state, "kind": "train", "pid": pid, "host": socket.gethostname(), "started": started}))
    (runs / name / "metrics.json").write_text(json.dumps({"dev": {"score": 47.123}, "best_epoch": 12.0}))

    result = run_dsum("runs", "--dir", str(runs), env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines if "11-29 14:05" in line]  # the date, whole, on each run's first line
    assert len(rows) == 3
    assert ["finished" in rows[0], "running" in rows[1], "crashed" in rows[2]] == [True, True, True]
    assert "47.12" in rows[0] and f"{cfg.training.learning_rate:g}" in rows[0]


def test_compare_shows_config_and_metric_diff_and_draws_curves(runs, tmp_path):
    png = tmp_path / "curves.png"
    result = run_dsum("runs", "compare", "demo", "demo-2", "--dir", str(runs), "--out", str(png), env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    line = next(l for l in result.stdout.splitlines() if "training.learning_rate" in l)
    assert "0.003" in line and "0.001" in line
    a, b = _metrics(runs / "demo")["dev"]["score"], _metrics(runs / "demo-2")["dev"]["score"]
    score_line = next(l for l in result.stdout.splitlines() if l.strip("│ ").startswith("score"))
    assert f"{a:.2f}" in score_line and f"{b:.2f}" in score_line and f"{b - a:+.2f}" in score_line
    assert f"learning curves: {png}" in result.stdout

    image = imread(png)
    assert image.shape == (400, 1100, 4)
    # Both runs drawn: matplotlib's first two line colours (tab:blue, tab:orange) cover real areas.
    for colour in ((0.122, 0.467, 0.706), (1.0, 0.498, 0.055)):
        assert (np.abs(image[..., :3] - colour).max(axis=-1) < 0.02).sum() > 300

    comparison = compare_runs(str(runs / "demo"), str(runs / "demo-2"), runs, png)  # paths work too
    assert ("training.learning_rate", 0.003, 0.001) in comparison.config
    assert ("general.parent", None, "demo") in comparison.config
    assert all(key.split(".")[0] not in ("model", "data") for key, _, _ in comparison.config)
    assert comparison.metrics[0] == ("score", a, b, pytest.approx(b - a))

    # Gain or noise: the paired bootstrap over the dev rows both scored, and each run's topic halves.
    boot = comparison.bootstrap
    assert (boot.a, boot.b, boot.diff) == (pytest.approx(a), pytest.approx(b), pytest.approx(b - a))
    assert boot.rows == 20 and boot.resamples == 1000 and boot.low <= boot.diff <= boot.high
    assert f"paired bootstrap over dev rows: demo-2 − demo {b - a:+.2f}" in result.stdout
    assert set(comparison.halves) == {"demo", "demo-2"} and comparison.halves["demo"].topics == 20
    assert comparison.halves["demo"].score == pytest.approx(a)
    assert "demo topic halves: mean |public − private|" in result.stdout
    same = compare_runs("demo", "demo", runs, tmp_path / "same.png").bootstrap
    assert same.low <= 0.0 <= same.high and same.diff == 0.0 and same.b_wins == 0.0


def test_compare_unknown_run_names_the_available_ones(runs):
    result = run_dsum("runs", "compare", "demo", "demo-9", "--dir", str(runs))
    assert result.returncode == 2
    assert "no run 'demo-9'" in result.stderr and "available: demo, demo-2" in result.stderr
    missing = run_dsum("runs", "--dir", str(runs / "nowhere"))
    assert missing.returncode == 2 and "no runs directory" in missing.stderr


def test_record_has_scores_parent_diff_and_no_secrets(runs, tmp_path, monkeypatch):
    run_dir = _copy_run(runs / "demo-2", tmp_path / "demo-2")
    secret = "wandb-key-0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    cfg = load_config(run_dir / "config.yaml", [f"general.notes=lower learning rate; key was {secret}"])
    parent = resolve_parent(cfg)
    assert parent == runs / "demo"
    metrics = _metrics(run_dir)
    text = write_record(run_dir, cfg, metrics, parent).read_text()
    assert text.startswith("# demo-2\n")
    assert f"| board score (R1+R2+RL)/3×100 | {metrics['dev']['score']:.2f} |" in text
    assert f"| ROUGE-2 F1 | {metrics['dev']['rouge2']:.4f} |" in text
    assert f"| global step | {metrics['global_step']} |" in text
    assert "| learning rate | 0.001 |" in text
    assert "| training.learning_rate | 0.003 | 0.001 |" in text
    assert "general.parent |" not in text  # always differs, says nothing about the change
    assert "## Purpose\n\nlower learning rate" in text
    assert "- paired bootstrap over dev rows: this run − parent " in text and "topic halves: mean |public − private|" in text
    assert text.rstrip().endswith("## Insights / next steps")
    assert secret not in text

    # The root run: no parent; an offline W&B run says how to upload it.
    root = _copy_run(runs / "demo", tmp_path / "demo")
    (root / "tracking.json").write_text(json.dumps(
        {"backend": "wandb", "url": None, "run_id": "abc123", "mode": "offline", "dir": "wandb/offline-run-x"}))
    text = write_record(root, load_config(root / "config.yaml"), _metrics(root)).read_text()
    assert "no parent" in text and "`wandb sync wandb/offline-run-x`" in text
    assert "- no parent with dev_predictions.csv to compare with" in text


def test_unknown_parent_is_a_user_error(runs):
    cfg = load_config(runs / "demo" / "config.yaml", ["general.parent=demo-7"])
    with pytest.raises(UserError, match=r"general.parent='demo-7'.*available: demo, demo-2"):
        resolve_parent(cfg)
    by_path = load_config(runs / "demo" / "config.yaml", [f"general.parent={runs / 'demo-2'}"])
    assert resolve_parent(by_path) == runs / "demo-2"
    assert [r.name for r in list_runs(runs, sort="name")] == ["demo", "demo-2"]


def test_predict_candidates_writes_the_k_best_beams_for_mbr(runs, tmp_path, monkeypatch):
    cfg = load_config(runs / "demo" / "config.yaml")  # generation.num_beams 2
    out = tmp_path / "dev_predict.csv"
    result = predict(cfg, runs / "demo", "dev", out, candidates=2)
    candidates = pd.read_csv(result["candidates"], dtype={"summary": str}, keep_default_na=False)
    assert result["candidates"] == str(tmp_path / "dev_predict_candidates.csv")
    assert list(candidates.columns) == ["fname", "rank", "kind", "summary"]
    submission = read_predictions(out)
    assert candidates["fname"].tolist() == [f for f in submission for _ in (1, 2)]
    assert candidates["rank"].tolist() == [1, 2] * len(submission)
    assert set(candidates["kind"]) == {"beam"}
    best = candidates[candidates["rank"] == 1]
    assert dict(zip(best["fname"], best["summary"])) == submission  # rank 1 is the submission's summary
    assert result["score"] == pytest.approx(_metrics(runs / "demo")["dev"]["score"])

    # A candidates file is one source per rank; a run's dev_predictions.csv is one source too.
    files = run_mbr([Path(result["candidates"]), runs / "demo-2" / "dev_predictions.csv"], tmp_path / "mbr.csv", gold=cfg.data.dev)
    assert files.result.labels == ["dev_predict_candidates#1", "dev_predict_candidates#2", "dev_predictions"]
    assert files.gold.scores["dev_predict_candidates#1"] == pytest.approx(result["score"])
    assert files.gold.scores["dev_predictions"] == pytest.approx(_metrics(runs / "demo-2")["dev"]["score"])
    assert sum(files.result.wins().values()) == 20 and (tmp_path / "mbr_record.md").is_file()
    # Samples: drawn after the beams, seeded by general.seed (the same file twice). The tiny model's
    # next-token probabilities are all below the 0.02 cut (it would draw its greedy summary): cut lower.
    monkeypatch.setitem(generate.SAMPLING, "epsilon_cutoff", 1e-4)
    drawn = predict(cfg, runs / "demo", "dev", tmp_path / "sampled.csv", samples=3)["candidates"]
    sampled = pd.read_csv(drawn, dtype={"summary": str}, keep_default_na=False)
    assert sampled["kind"].tolist() == ["beam", "sample", "sample", "sample"] * 20
    assert sampled["rank"].tolist() == [1, 2, 3, 4] * 20
    assert dict(zip(sampled["fname"][::4], sampled["summary"][::4])) == submission
    assert sampled["summary"][sampled["kind"] == "sample"].nunique() > 20  # draws differ from each other
    again = predict(cfg, runs / "demo", "dev", tmp_path / "again.csv", samples=3)["candidates"]
    assert pd.read_csv(again, dtype={"summary": str}, keep_default_na=False).equals(sampled)
    # On CTranslate2 (top-p 0.9, seeded): the same layout, draws that differ, the same file twice.
    on_ct2 = cfg.model_copy(update={"generation": cfg.generation.model_copy(update={"engine": "ctranslate2"})})
    drawn_ct2 = [
        pd.read_csv(predict(on_ct2, runs / "demo", "dev", tmp_path / f"ct2_{i}.csv", samples=3)["candidates"],
                    dtype={"summary": str}, keep_default_na=False)
        for i in (1, 2)
    ]
    assert drawn_ct2[0]["kind"].tolist() == sampled["kind"].tolist() and drawn_ct2[0].equals(drawn_ct2[1])
    assert drawn_ct2[0]["summary"][drawn_ct2[0]["kind"] == "sample"].nunique() > 20
    with pytest.raises(UserError, match=r"--candidates 3: .*1 ≤ K ≤ generation.num_beams \(2\)"):
        predict(cfg, runs / "demo", "dev", out, candidates=3)


# --- dsum inspect on the two runs (issue 26) ----------------------------------------------------


def test_inspect_a_run_and_runs_compare_html_agree_with_runs_compare(runs, tmp_path):
    """The page's numbers are those of the run's own dev scoring and of `dsum runs compare`; a summary cut
    at generation.max_new_tokens is counted with the run's tokenizer."""
    from transformers import AutoTokenizer

    result = run_dsum("inspect", "demo", "--dir", str(runs))
    assert result.returncode == 0, result.stderr
    assert f"page: {runs / 'demo' / 'inspect.html'}" in result.stdout
    data = json.loads((runs / "demo" / "inspect.json").read_text())
    system = data["systems"][0]
    assert system["score"] == pytest.approx(_metrics(runs / "demo")["dev"]["score"], rel=1e-12)
    written = pd.read_csv(runs / "demo" / "dev_predictions.csv")
    table = pd.DataFrame(data["table"]["rows"], columns=data["table"]["columns"])
    assert table["fname"].tolist() == written["fname"].tolist()
    assert table["score0"].tolist() == pytest.approx(written["score"].tolist(), abs=1e-4)
    assert set(table["topic"]) == set(pd.read_csv(REPO / "data/sample/dev.csv")["topic"])  # from the config's dev file

    cfg = load_config(runs / "demo" / "config.yaml")
    tokenizer = AutoTokenizer.from_pretrained(runs / "demo" / "checkpoint-best")
    hit = sum(len(tokenizer(p, add_special_tokens=False)["input_ids"]) >= cfg.generation.max_new_tokens for p in written["prediction"])
    assert next(f for f in data["flags"] if f["flag"] == "max_new_tokens")["counts"] == [hit]

    compared = run_dsum("runs", "compare", "demo", "demo-2", "--dir", str(runs), "--out", str(tmp_path / "c.png"), "--html")
    assert compared.returncode == 0, compared.stderr
    assert f"page: {runs / 'inspect_demo_vs_demo-2.html'}" in compared.stdout
    pair = json.loads((runs / "inspect_demo_vs_demo-2.json").read_text())
    comparison = compare_runs("demo", "demo-2", runs, tmp_path / "c.png")
    assert pair["comparison"]["bootstrap"] == comparison.bootstrap.to_dict()
    for s in pair["systems"]:
        assert s["halves"] == comparison.halves[s["label"]].to_dict()
    assert f"B − A {comparison.bootstrap.diff:+.2f}" in compared.stdout
