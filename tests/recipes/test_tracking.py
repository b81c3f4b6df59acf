"""Trackers for real: W&B offline runs, MLflow on SQLite, TensorBoard event files; secrets never written."""

import base64
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import REPO, run_dsum, tiny_overrides

from dsum.config import load_config
from dsum.config.diff import flatten
from dsum.runs.tracking import data_artifact_name, data_files, metric_name, start_tracker, wandb_mode
from dsum.util.secrets import redact
from wandb_log import read_run, records

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
    # W&B in its own process: it reads HOME and its variables once per process (and keeps a service there).
    wandb = "tracking.backend=wandb" in overrides
    result = run_dsum("train", "-c", DEMO, *[f"--set={o}" for o in overrides], env=env, cwd=tmp_path, process=wandb)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(result.stdout.split("run directory: ")[-1].strip())
    return run_dir, json.loads((run_dir / "metrics.json").read_text()), result.stdout


def eval_scores(run_dir: Path) -> list[float]:
    lines = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return [line["eval_board_score"] for line in lines if "eval_board_score" in line]


def test_wandb_offline_run_holds_the_board_score(tmp_path):
    run_dir, metrics, stdout = train_run(
        tmp_path, "tracking.backend=wandb", "tracking.group=tests", "tracking.tags=[demo, ci]", "tracking.log_model=true",
        "tracking.log_data=true", env=clean_env(tmp_path),
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
    assert run["artifacts"]["data-sample"] == "dataset"  # tracking.log_data, from `dsum train`
    assert set(tracking["data"]["sha256"]) == {"train/train.csv", "dev/dev.csv", "test/test.csv", "sample_submission/sample_submission.csv"}
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


# ---------------------------------------------------------------------------------------------
# tracking.log_data: in-process trackers on a run directory laid out by hand, no training


def data_copy(folder: Path) -> Path:
    """The bundled sample's four files, copied to `folder` (so a test can change one)."""
    folder.mkdir(parents=True)
    for name in ("train.csv", "dev.csv", "test.csv", "sample_submission.csv"):
        shutil.copy(REPO / "data/sample" / name, folder / name)
    return folder


def data_config(tmp_path: Path, data: Path, *overrides: str):
    return load_config(
        REPO / "configs/demo.yaml",
        [
            f"general.output_dir={tmp_path / 'runs'}", "general.data_version=v1",
            f"data.train=[{data / 'train.csv'}]", f"data.dev={data / 'dev.csv'}",
            f"data.test={data / 'test.csv'}", f"data.sample_submission={data / 'sample_submission.csv'}",
            "tracking.log_data=true", *overrides,
        ],
    )


def offline_data_run(tmp_path: Path, name: str, data: Path) -> tuple[dict, "object"]:
    """Start and finish a W&B offline tracker with log_data; (tracking.json, the artifact record)."""
    import wandb

    run_dir = tmp_path / "runs" / name
    run_dir.mkdir(parents=True)
    tracker = start_tracker(data_config(tmp_path, data, "tracking.backend=wandb", "tracking.mode=offline"), run_dir)
    tracker.finish({})
    # finish() can return before W&B's service has written the whole log; teardown waits for it
    # (a command's process ends, which does the same).
    wandb.teardown()
    tracking = json.loads((run_dir / "tracking.json").read_text())
    [log] = list((run_dir / "wandb").glob(f"offline-run-*/run-{tracking['run_id']}.wandb"))
    [artifact] = [r.artifact for r in records(log) if r.WhichOneof("record_type") == "artifact"]
    return tracking, artifact


def md5_b64(path: Path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()


def test_wandb_log_data_versions_the_data_by_content(tmp_path, monkeypatch):
    for key in [k for k in os.environ if k.startswith("WANDB_")]:
        monkeypatch.delenv(key)
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no login, and W&B's staging copies land here
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-home"))
    first = data_copy(tmp_path / "data")
    tracking, artifact = offline_data_run(tmp_path, "a", first)

    files = {"train/train.csv": "train.csv", "dev/dev.csv": "dev.csv", "test/test.csv": "test.csv",
             "sample_submission/sample_submission.csv": "sample_submission.csv"}
    assert (artifact.name, artifact.type) == ("data-v1", "dataset")
    # The artifact holds the four files, each with the md5 W&B checks contents by.
    assert {e.path: e.digest for e in artifact.manifest.contents} == {name: md5_b64(first / f) for name, f in files.items()}
    data = tracking["data"]
    assert data["artifact"] == "data-v1" and data["version"] is None  # the version is W&B's to give on upload
    assert data["digest"] == artifact.digest
    assert data["sha256"] == {name: hashlib.sha256((first / f).read_bytes()).hexdigest() for name, f in files.items()}
    assert json.loads(artifact.metadata)["sha256"] == data["sha256"]

    # The same content in another folder: the same digest, so W&B keeps the version it has.
    _, same = offline_data_run(tmp_path, "b", data_copy(tmp_path / "elsewhere"))
    assert same.digest == artifact.digest
    # One changed row: another digest, so a new version of data-v1.
    with (first / "dev.csv").open("a", encoding="utf-8") as f:
        f.write("dev_extra,#Person1#: 안녕하세요.,인사한다.\n")
    tracking_c, changed = offline_data_run(tmp_path, "c", first)
    assert changed.name == "data-v1" and changed.digest != artifact.digest
    assert tracking_c["data"]["sha256"]["dev/dev.csv"] != data["sha256"]["dev/dev.csv"]
    assert tracking_c["data"]["sha256"]["train/train.csv"] == data["sha256"]["train/train.csv"]


def test_mlflow_log_data_keeps_the_files_and_their_sha256(tmp_path):
    from mlflow.tracking import MlflowClient

    data = data_copy(tmp_path / "data")
    run_dir = tmp_path / "runs" / "m"
    run_dir.mkdir(parents=True)
    tracker = start_tracker(data_config(tmp_path, data, "tracking.backend=mlflow", "tracking.project=tests"), run_dir)
    tracker.finish({})
    tracking = json.loads((run_dir / "tracking.json").read_text())
    run = MlflowClient(tracking_uri=tracking["dir"]).get_run(tracking["run_id"])
    sha = hashlib.sha256((data / "dev.csv").read_bytes()).hexdigest()
    assert tracking["data"]["sha256"]["dev/dev.csv"] == sha and run.data.params["data_sha256.dev/dev.csv"] == sha
    stored = Path(run.info.artifact_uri.removeprefix("file://")) / "data"
    assert sorted(str(p.relative_to(stored)) for p in stored.rglob("*.csv")) == sorted(tracking["data"]["sha256"])
    assert (stored / "dev/dev.csv").read_bytes() == (data / "dev.csv").read_bytes()


def test_data_files_names_and_artifact_name(tmp_path):
    data = data_copy(tmp_path / "data")
    other = data_copy(tmp_path / "aug")
    (data / "sample_submission.csv").unlink()  # a missing file is left out
    cfg = data_config(tmp_path, data, f"data.train=[{data / 'train.csv'}, {other / 'train.csv'}, {data / 'train.csv'}]")
    assert data_files(cfg) == {
        "train/train.csv": data / "train.csv",
        "train-2/train.csv": other / "train.csv",  # same file name, another file
        "dev/dev.csv": data / "dev.csv",
        "test/test.csv": data / "test.csv",
    }
    assert data_artifact_name("v2 aug/solar") == "data-v2-aug-solar"
