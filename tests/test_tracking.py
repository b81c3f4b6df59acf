"""Trackers for real: W&B offline runs, MLflow on SQLite, TensorBoard event files; secrets never written."""

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_dsum, tiny_overrides

from dsum.config import load_config
from dsum.tracking import flatten, metric_name, redact, wandb_mode
from wandb_log import read_run

DEMO = str(REPO / "configs" / "demo.yaml")
FAKE_SECRETS = {"UPSTAGE_API_KEY": "up-FAKE-secret-7d1c90", "WANDB_API_KEY": "wb-FAKE-secret-0a4e55"}


def clean_env(tmp_path: Path, **extra: str) -> dict:
    """No W&B login anywhere: HOME without a .netrc, no key, no WANDB_MODE."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k not in FAKE_SECRETS}
    env.update(HOME=str(tmp_path / "home"), WANDB_DIR=str(tmp_path / "wandb-home"), **extra)
    (tmp_path / "home").mkdir(exist_ok=True)
    return env


SAMPLE_DATA = [
    f"data.train=[{REPO}/data/sample/train.csv]",
    f"data.dev={REPO}/data/sample/dev.csv",
    f"data.test={REPO}/data/sample/test.csv",
    f"data.sample_submission={REPO}/data/sample/sample_submission.csv",
]


def train_run(tmp_path: Path, *overrides: str, env: dict) -> tuple[Path, dict, str]:
    """A tiny demo run from tmp_path as working directory, so any ./wandb or ./mlruns lands there."""
    overrides = tiny_overrides(tmp_path, "general.run_name=tracked", *SAMPLE_DATA, *overrides)
    result = run_dsum("train", "-c", DEMO, *[f"--set={o}" for o in overrides], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(result.stdout.split("run directory: ")[-1].strip())
    return run_dir, json.loads((run_dir / "metrics.json").read_text()), result.stdout


def eval_scores(run_dir: Path) -> list[float]:
    lines = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return [line["eval_board_score"] for line in lines if "eval_board_score" in line]


def test_wandb_offline_run_holds_the_board_score(tmp_path):
    run_dir, metrics, stdout = train_run(
        tmp_path, "tracking.backend=wandb", "tracking.group=tests", "tracking.tags=[demo, ci]", "tracking.log_model=true",
        env=clean_env(tmp_path),
    )
    assert "wandb sync" in stdout
    tracking = json.loads((run_dir / "tracking.json").read_text())
    assert tracking["backend"] == "wandb" and tracking["mode"] == "offline" and tracking["url"] is None
    [log] = list((run_dir / "wandb").glob(f"offline-run-*/run-{tracking['run_id']}.wandb"))
    run = read_run(log)
    assert run["run"].display_name == "tracked" and run["run"].run_group == "tests" and list(run["run"].tags) == ["demo", "ci"]
    assert run["summary"]["dev"]["score"] == pytest.approx(metrics["dev"]["score"])
    assert run["summary"]["eval/board_score"]["max"] == pytest.approx(max(eval_scores(run_dir)))
    logged = [row["eval/board_score"] for row in run["history"] if "eval/board_score" in row]
    assert logged == pytest.approx(eval_scores(run_dir))
    assert run["summary"]["dev/predictions/_type"] == "table-file"
    table = json.loads((log.parent / "files" / run["summary"]["dev/predictions/path"]).read_text())
    assert table["columns"][:3] == ["fname", "dialogue", "prediction"] and len(table["data"]) == metrics["dev"]["rows"]
    assert run["config"]["training"]["learning_rate"] == 3e-3
    assert run["artifacts"]["tracked-model"] == "model"  # tracking.log_model: checkpoint-best
    assert "W&B" in (run_dir / "record.md").read_text() and "wandb sync" in (run_dir / "record.md").read_text()


def test_mlflow_run_reads_back_with_the_metrics_of_metrics_json(tmp_path):
    from mlflow.tracking import MlflowClient

    run_dir, metrics, _ = train_run(tmp_path, "tracking.backend=mlflow", "tracking.project=tests", env=clean_env(tmp_path))
    uri = f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"
    tracking = json.loads((run_dir / "tracking.json").read_text())
    assert tracking["dir"] == uri
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(tracking["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked"
    for part in ("score", "rouge1", "rouge2", "rougeL"):
        assert run.data.metrics[f"dev_{part}"] == pytest.approx(metrics["dev"][part])
    assert run.data.metrics["best_epoch"] == pytest.approx(metrics["best_epoch"])
    history = client.get_metric_history(run.info.run_id, "eval_board_score")
    assert [m.value for m in history] == pytest.approx(eval_scores(run_dir))
    assert run.data.params["training.learning_rate"] == "0.003"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "dev_predictions.json" in artifacts


def test_tensorboard_events_hold_eval_scores(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, metrics, _ = train_run(tmp_path, "tracking.backend=tensorboard", env=clean_env(tmp_path))
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars("eval/board_score")] == pytest.approx(eval_scores(run_dir), abs=1e-4)
    assert events.Scalars("final/dev.score")[0].value == pytest.approx(metrics["dev"]["score"], abs=1e-4)


def test_no_secret_reaches_any_file(tmp_path):
    env = clean_env(tmp_path, **FAKE_SECRETS)
    secret = FAKE_SECRETS["UPSTAGE_API_KEY"]
    # A careless user even pastes a key into the notes: it is redacted everywhere.
    run_dir, _, stdout = train_run(
        tmp_path, "tracking.backend=wandb", "tracking.mode=offline", f"general.notes=try key {secret}", env=env
    )
    train_run(tmp_path, "tracking.backend=mlflow", f"general.notes=key {secret}", env=env)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 20
    for path in written:
        data = path.read_bytes()
        for value in FAKE_SECRETS.values():
            assert value.encode() not in data, f"{value} found in {path}"
    assert secret not in stdout
    assert "try key ***" in (run_dir / "config.yaml").read_text()


def test_wandb_mode_auto(tmp_path, monkeypatch):
    cfg = load_config(REPO / "configs" / "demo.yaml", ["tracking.backend=wandb"]).tracking
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert wandb_mode(cfg) == "offline"
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password x\n")
    assert wandb_mode(cfg) == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode(cfg) == "disabled"
    assert wandb_mode(cfg.model_copy(update={"mode": "offline"})) == "offline"


def test_helpers(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "abcd1234")
    assert redact({"a": ["x abcd1234 y"], "b": 3}) == {"a": ["x *** y"], "b": 3}
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": []}) == {"a.b": 1, "a.c.d": 2, "e": []}
    assert metric_name("eval_board_score") == "eval/board_score" and metric_name("loss") == "train/loss"
