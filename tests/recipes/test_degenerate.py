"""Empty answers: generated again and reported by id; a finished training stays finished when its test
submission cannot be made; a file that fails the check never sits under the name submission.csv."""

import json
import logging
from pathlib import Path

import pandas as pd
from conftest import REPO, run_dsum, tiny_overrides

from dsum.config import load_config
from dsum.data.submission import check_submission

SAMPLE = REPO / "data" / "sample"


def few_rows(out: Path, train: int = 8, dev: int = 4, test: int = 4) -> dict[str, str]:
    """The bundled sample cut to a few rows (and its sample submission to the test's), as data.* settings."""
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train), ("dev", dev), ("test", test)):
        pd.read_csv(SAMPLE / f"{split}.csv", dtype=str, keep_default_na=False).head(rows).to_csv(out / f"{split}.csv", index=False)
    lines = (SAMPLE / "sample_submission.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (out / "sample_submission.csv").write_text("".join(lines[: test + 1]), encoding="utf-8")
    return {"data.train": f"[{out / 'train.csv'}]", "data.dev": str(out / "dev.csv"), "data.test": str(out / "test.csv"),
            "data.sample_submission": str(out / "sample_submission.csv")}


def test_qwen3_lora_recipe_on_the_real_shaped_standin_ends_finished_with_a_checked_submission(qwen3_standin, tmp_path):
    # configs/qwen3-lora.yaml as written but for the model (the Qwen3 stand-in), the rows and the steps: two
    # steps of LoRA teach the random model to answer "\n\n" until max_new_tokens, which decodes to nothing.
    settings = {
        **few_rows(tmp_path / "data"), "model.name": str(qwen3_standin), "general.output_dir": str(tmp_path / "runs"),
        "general.run_name": "qwen3", "training.epochs": 1, "training.batch_size": 4, "training.gradient_accumulation_steps": 1,
        "training.eval_strategy": "epoch", "training.eval_steps": "null", "training.eval_batch_size": 4,
        "model.max_source_length": 256, "model.max_target_length": 32, "generation.max_new_tokens": 8,
    }
    result = run_dsum("train", "-c", "configs/qwen3-lora.yaml", *[arg for k, v in settings.items() for arg in ("--set", f"{k}={v}")])
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "qwen3"
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"
    for split in ("dev", "test"):
        line = f"4 answers were empty and were generated again with at least 4 new tokens ({split}_0, {split}_1, {split}_2, {split}_3)"
        assert line in result.stdout.splitlines()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["submission"] == str(run_dir / "submission.csv") and "submission_problem" not in metrics
    cfg = load_config(run_dir / "config.yaml")
    assert check_submission(run_dir / "submission.csv", cfg.data.test, cfg.data.sample_submission) == []
    assert not (run_dir / "submission.invalid.csv").exists()
    assert (run_dir / "checkpoint-best" / "adapter_config.json").is_file()


def test_answers_that_stay_empty_leave_the_run_finished_and_say_so_in_one_line(tmp_path, caplog):
    from dsum.verbs.train import train

    # One new token, which a seq2seq model's forced eos takes: every answer is empty, generated again or not.
    cfg = load_config(REPO / "configs" / "demo.yaml", tiny_overrides(tmp_path, "training.epochs=1", "generation.max_new_tokens=1"))
    with caplog.at_level(logging.INFO, logger="dsum"):
        run_dir = train(cfg)
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"
    assert (run_dir / "checkpoint-best" / "model.safetensors").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    invalid = run_dir / "submission.invalid.csv"
    problem = (f"the submission failed its check, kept as {invalid} (not submission.csv): 20 summaries are empty or "
               "whitespace only (test_0, test_1, test_2, test_3, test_4, ...); write a summary for every dialogue")
    assert metrics["submission"] is None and metrics["submission_problem"] == problem
    assert metrics["dev"]["score"] == 0.0 and metrics["dev"]["rows"] == 20
    assert not (run_dir / "submission.csv").exists() and invalid.is_file()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"training finished, but it wrote no submission: {problem}" in warnings
    assert ("20 answers were empty and were generated again with at least 1 new tokens (test_0, test_1, test_2, "
            "test_3, test_4, ...); 20 are still empty (test_0, test_1, test_2, test_3, test_4, ...)") in warnings
