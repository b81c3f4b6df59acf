"""dsum tune for real: Optuna on SQLite (and PostgreSQL when it can be started), tiny trials on the sample."""

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from glob import glob
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import REPO, TINY, run_dsum
from optuna.trial import TrialState

from dsum.config import load_config
from dsum.verbs.tune import load_study, redact_url, storage_url, with_values
from wandb_log import read_run

TUNE = str(REPO / "configs" / "demo-tune.yaml")


def tune_overrides(tmp_path: Path, *extra: str) -> list[str]:
    overrides = [
        f"general.output_dir={tmp_path / 'runs'}",
        *TINY,
        "training.epochs=3",
        "tune.study_name=t",
        "tune.space={training.learning_rate: {type: float, low: 1.0e-3, high: 5.0e-3, log: true}}",
        *extra,
    ]
    return [arg for o in overrides for arg in ("--set", o)]


def tune_config(tmp_path: Path, *extra: str):
    args = tune_overrides(tmp_path, *extra)
    return load_config(TUNE, args[1::2])


def trials(cfg) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=cfg.tune.study_name, storage=storage_url(cfg)).get_trials()


def trial_states(db: Path) -> list[str]:
    """The trials' states read through a read-only SQLite connection: Optuna's own storage would
    create its tables and version row, racing the command that is creating them."""
    import sqlite3

    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
            return [state for (state,) in connection.execute("SELECT state FROM trials ORDER BY number")]
    except sqlite3.OperationalError:  # the tables are not there yet
        return []


def test_failed_and_pruned_trials_do_not_stop_the_study_and_a_rerun_continues(tmp_path):
    space = "{training.learning_rate: {type: float, low: 1.0e-9, high: 5.0e-3, log: true}, training.warmup_ratio: {type: float, low: 0.0, high: 1.5}}"
    extra = ("tune.n_trials=3", "tune.n_startup_trials=1", "tune.n_warmup_steps=0", f"tune.space={space}")
    cfg = tune_config(tmp_path, *extra)
    study = load_study(cfg)
    study.enqueue_trial({"training.learning_rate": 3e-3, "training.warmup_ratio": 0.1})  # completes
    study.enqueue_trial({"training.learning_rate": 3e-3, "training.warmup_ratio": 1.2})  # invalid: fails with its reason
    study.enqueue_trial({"training.learning_rate": 1e-9, "training.warmup_ratio": 0.1})  # learns nothing: pruned
    result = run_dsum("tune", "-c", TUNE, *tune_overrides(tmp_path, *extra))
    assert result.returncode == 0, result.stderr[-3000:]
    done, failed, pruned = trials(cfg)
    assert done.state == TrialState.COMPLETE
    run_dir = Path(done.user_attrs["run_dir"])
    assert done.value == pytest.approx(json.loads((run_dir / "metrics.json").read_text())["dev"]["score"])
    assert run_dir.name == "t-trial-000" and (run_dir / "record.md").exists()
    assert failed.state == TrialState.FAIL and "warmup_ratio" in failed.user_attrs["fail_reason"]
    assert pruned.state == TrialState.PRUNED and pruned.user_attrs["epochs_trained"] == pytest.approx(1.0)
    assert json.loads((Path(pruned.user_attrs["run_dir"]) / "status.json").read_text())["status"] == "pruned"
    # The table, best.yaml (a valid training config with the best value) and the plots.
    assert "best: trial 0" in result.stdout and "optuna-dashboard sqlite:///" in result.stdout
    best = load_config(tmp_path / "runs" / "t" / "best.yaml")
    assert best.training.learning_rate == pytest.approx(3e-3) and best.tune is None
    plots = sorted(p.name for p in (tmp_path / "runs" / "t" / "plots").glob("*.png"))
    assert {"history.png", "parallel_coordinate.png", "intermediate_values.png"} <= set(plots)
    # Running the same command again continues the study with the next trial number.
    again = run_dsum("tune", "-c", TUNE, *tune_overrides(tmp_path, "tune.n_trials=1"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert [t.number for t in trials(cfg)] == [0, 1, 2, 3] and trials(cfg)[3].state == TrialState.COMPLETE


def test_killed_study_resumes_and_loses_only_the_running_trial(tmp_path):
    extra = ("tune.n_trials=3", "tune.heartbeat_interval=1", "tune.pruner=none", "training.epochs=4")
    cfg = tune_config(tmp_path, *extra)
    process = subprocess.Popen(
        [sys.executable, "-m", "dsum", "tune", "-c", TUNE, *tune_overrides(tmp_path, *extra)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 600
    # Kill -9 while trial 1 runs, once trial 0 is complete.
    while time.time() < deadline:
        states = trial_states(tmp_path / "runs" / "t" / "optuna.db")
        if states[:1] == ["COMPLETE"] and len(states) == 2:
            break
        assert process.poll() is None, process.stderr.read()[-3000:]
        time.sleep(0.5)
    time.sleep(2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = trials(cfg)
    assert [t.state for t in before] == [TrialState.COMPLETE, TrialState.RUNNING]
    time.sleep(4)  # past the grace period (3 heartbeats): the killed trial is stale
    again = run_dsum("tune", "-c", TUNE, *tune_overrides(tmp_path, *extra, "tune.n_trials=1"))
    assert again.returncode == 0, again.stderr[-3000:]
    after = trials(cfg)
    assert after[0].value == before[0].value  # the finished trial is kept as it was
    assert after[1].state == TrialState.FAIL  # the killed one is failed ...
    retried = after[2]  # ... and retried with the same parameters
    assert retried.state == TrialState.COMPLETE and retried.params == before[1].params
    assert retried.system_attrs["failed_trial"] == 1


def test_two_workers_share_one_sqlite_study(tmp_path):
    extra = ("tune.n_trials=2", "tune.pruner=none", "training.epochs=1")
    result = run_dsum("tune", "-c", TUNE, *tune_overrides(tmp_path, *extra), "--workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    done = trials(tune_config(tmp_path, *extra))
    assert [t.state for t in done] == [TrialState.COMPLETE] * 2
    assert len({t.params["training.learning_rate"] for t in done}) == 2  # workers sample with their own seeds
    assert len({t.user_attrs["run_dir"] for t in done}) == 2


def test_one_wandb_offline_run_per_trial(tmp_path):
    extra = ("tune.n_trials=2", "tune.pruner=none", "training.epochs=1", "tracking.backend=wandb", "tracking.mode=offline")
    result = run_dsum("tune", "-c", TUNE, *tune_overrides(tmp_path, *extra))
    assert result.returncode == 0, result.stderr[-3000:]
    done = trials(tune_config(tmp_path, *extra))
    logs = sorted((tmp_path / "runs" / "t" / "trials").glob("*/wandb/offline-run-*/run-*.wandb"))
    assert len(logs) == 2
    runs = [read_run(log) for log in logs]
    assert [r["run"].display_name for r in runs] == ["t-trial-000", "t-trial-001"]
    assert {r["run"].run_group for r in runs} == {"t"}
    for run, trial in zip(runs, done):
        assert run["summary"]["dev"]["score"] == pytest.approx(trial.value)
        assert run["config"]["training"]["learning_rate"] == pytest.approx(trial.params["training.learning_rate"])


def test_decoding_search_on_a_fixed_checkpoint(tmp_path):
    trained = run_dsum("train", "-c", str(REPO / "configs" / "demo.yaml"), *tune_overrides(tmp_path, "general.run_name=base"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    checkpoint = tmp_path / "runs" / "base" / "checkpoint-best"
    space = "{generation.num_beams: {type: categorical, choices: [1, 3]}, generation.length_penalty: {type: float, low: 0.5, high: 1.5, step: 0.5}}"
    extra = ("tune.mode=decode", f"tune.checkpoint={checkpoint}", f"tune.space={space}", "tune.n_trials=3", "tune.study_name=dec")
    result = run_dsum("tune", "-c", TUNE, *tune_overrides(tmp_path, *extra))
    assert result.returncode == 0, result.stderr[-3000:]
    cfg = tune_config(tmp_path, *extra)
    done = trials(cfg)
    assert [t.state for t in done] == [TrialState.COMPLETE] * 3
    assert not (tmp_path / "runs" / "dec" / "trials").exists()  # nothing was trained
    # Each trial's value is what `dsum predict` scores with the same generation settings.
    trial = done[0]
    sets = [arg for key, value in trial.params.items() for arg in ("--set", f"{key}={value}")]
    predicted = run_dsum("predict", "-c", TUNE, *tune_overrides(tmp_path), *sets, "--checkpoint", str(checkpoint), "--split", "dev", "--out", str(tmp_path / "dev.csv"))
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert f"dev board score {trial.value:.2f}" in predicted.stdout


def test_space_errors_are_user_errors(tmp_path):
    result = run_dsum("tune", "-c", TUNE, *tune_overrides(tmp_path, "tune.space={training.learning_rat: {type: float, low: 1, high: 2}}"))
    assert result.returncode == 2 and "learning_rat" in result.stderr and "Traceback" not in result.stderr
    result = run_dsum("tune", "-c", str(REPO / "configs" / "demo.yaml"))
    assert result.returncode == 2 and "tune: section" in result.stderr
    cfg = tune_config(tmp_path)
    assert with_values(cfg, {"training.batch_size": 4}).training.batch_size == 4
    assert redact_url("postgresql://me:pw@db:5432/optuna") == "postgresql://me:***@db:5432/optuna"


# --- PostgreSQL: a real server on 127.0.0.1, two workers on one study ---


def find_initdb() -> str | None:
    return shutil.which("initdb") or next(iter(sorted(glob("/usr/lib/postgresql/*/bin/initdb"))), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    initdb = find_initdb()
    if initdb is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs it from Debian packages where it can)")
    bindir = Path(initdb).resolve().parent  # /usr/local/bin/initdb may link into /usr/lib/postgresql
    # The server refuses to run as root: run it as the `postgres` user the Debian package creates.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as an unprivileged user")
    base = Path(tempfile.mkdtemp(prefix="dsum-pg-"))
    if as_user:
        shutil.chown(base, user="postgres")
    data, port = base / "data", free_port()
    user = "postgres" if as_user else getpass.getuser()
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust"], check=True, capture_output=True)
    subprocess.run(
        [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "start",
         "-o", f"-p {port} -h 127.0.0.1 -k {base}"],
        check=True, capture_output=True,
    )
    try:
        yield f"postgresql+psycopg2://{user}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_two_workers_share_one_postgresql_study(tmp_path, postgres_url):
    extra = ("tune.n_trials=2", "tune.pruner=none", "training.epochs=1", f"tune.storage={postgres_url}")
    result = run_dsum("tune", "-c", TUNE, *tune_overrides(tmp_path, *extra), "--workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"optuna-dashboard {postgres_url}" in result.stdout
    done = optuna.load_study(study_name="t", storage=postgres_url).get_trials()
    assert [t.state for t in done] == [TrialState.COMPLETE] * 2
    assert not (tmp_path / "runs" / "t" / "optuna.db").exists()
    assert yaml.safe_load((tmp_path / "runs" / "t" / "best.yaml").read_text().split("\n", 2)[2])["tune"] is None
