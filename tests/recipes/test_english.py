"""English DialogSum (../shared/data/dialogsum-en: JSON lines, three references per test dialogue) through
every verb on a tiny seq2seq model: data check, train, predict dev, score, submission check. No Hangul report."""

import json
import logging
from pathlib import Path

import pytest
from conftest import REPO, run_dsum, tiny_overrides

from dsum.config import load_config


def head(source: Path, out: Path, rows: int) -> Path:
    out.write_text("".join(source.read_text(encoding="utf-8").splitlines(keepends=True)[:rows]), encoding="utf-8")
    return out


@pytest.fixture
def english(shared_data, tmp_path) -> dict[str, Path]:
    folder = shared_data / "dialogsum-en"
    return {split: head(folder / f"dialogsum.{split}.jsonl", tmp_path / f"{split}.jsonl", rows)
            for split, rows in (("train", 40), ("dev", 6), ("test", 6))}


def test_english_dialogsum_works_in_every_verb(english, tmp_path, caplog):
    from dsum.verbs.predict import predict
    from dsum.verbs.train import train

    checked = run_dsum("data", "check", *map(str, english.values()))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    cfg = load_config(REPO / "configs" / "demo.yaml", tiny_overrides(
        tmp_path, "training.epochs=1", f"data.train=[{english['train']}]", f"data.dev={english['dev']}",
        f"data.test={english['test']}", "data.sample_submission=null", "metric.tokenizer=whitespace",
    ))
    assert cfg.data.language == "auto"
    with caplog.at_level(logging.INFO, logger="dsum"):
        run_dir = train(cfg)
        dev = predict(cfg, run_dir, "dev", tmp_path / "dev.csv")
    messages = [r.getMessage() for r in caplog.records]
    assert not any("Hangul" in m for m in messages), messages  # English data: no Hangul report
    assert not list(tmp_path.rglob("*_non_korean.csv"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["dev"]["rows"] == 6 and dev["score"] == pytest.approx(metrics["dev"]["score"], abs=1e-9)

    submission = run_dir / "submission.csv"
    assert metrics["submission"] == str(submission)
    assert submission.read_text(encoding="utf-8").splitlines()[0] == ",fname,summary"  # no sample: the official layout
    check = run_dsum("submission", "check", str(submission), "--test", str(english["test"]))
    assert check.returncode == 0, check.stdout + check.stderr
    # The test file's three references score the submission: the mean over references, whitespace analyser.
    scored = run_dsum("score", "--pred", str(submission), "--gold", str(english["test"]), "--analyser", "whitespace", "--json")
    assert scored.returncode == 0, scored.stderr
    from dsum import score as score_files

    assert json.loads(scored.stdout.splitlines()[-1]) == score_files(submission, english["test"], "whitespace").to_dict()
    assert json.loads(scored.stdout.splitlines()[-1])["rows"] == 6
