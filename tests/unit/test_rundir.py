"""rundir.py, the owner of a run directory: claimed atomically, resume picks the right run, the files
that reproduce it. In-process, no training: run directories are laid out by hand."""

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import REPO, run_dsum

from dsum.config import load_config
from dsum.util.errors import UserError
from dsum.runs.directory import claim_run_dir, environment_record, git_commit, git_dirty, mark_status, uv_lock_sha256, write_run_files
from dsum.runs.read import read_status, run_status


def demo_config(tmp_path: Path, *overrides: str):
    return load_config(REPO / "configs/demo.yaml", [f"general.output_dir={tmp_path / 'runs'}", *overrides])


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def fake_run(path: Path, status: str, checkpoint_steps=(), checkpoint_time: int | None = None) -> Path:
    """A run directory as training leaves it: config.yaml, status.json, checkpoints/checkpoint-N."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("general:\n  run_name: demo\n")
    pid = dead_pid() if status == "running" else os.getpid()  # "running" with a dead pid: crashed
    state = {"status": status, "kind": "train", "pid": pid, "host": socket.gethostname(), "started": "2026-01-02T03:04:05+00:00"}
    (path / "status.json").write_text(json.dumps(state))
    if status == "finished":
        (path / "metrics.json").write_text(json.dumps({"dev": {"score": 30.0}}))
    for step in checkpoint_steps:
        checkpoint = path / "checkpoints" / f"checkpoint-{step}"
        checkpoint.mkdir(parents=True)
        if checkpoint_time is not None:
            os.utime(checkpoint, (checkpoint_time, checkpoint_time))
    return path


# ---------------------------------------------------------------------------------------------
# Claiming


def test_claiming_twice_gives_two_directories_each_marked_running(tmp_path):
    cfg = demo_config(tmp_path)
    first, second = claim_run_dir(cfg), claim_run_dir(cfg)
    assert (first, second) == (tmp_path / "runs/demo", tmp_path / "runs/demo-2")
    for run_dir in (first, second):
        assert run_dir.is_dir()
        state = read_status(run_dir)
        assert (state["status"], state["kind"], state["pid"], state["host"]) == ("running", "train", os.getpid(), socket.gethostname())
        assert run_status(run_dir) == "running"


def test_the_default_name_follows_the_convention(tmp_path):
    cfg = demo_config(tmp_path, "general.run_name=null")
    assert claim_run_dir(cfg).name == "tiny-bart_sample_lr0.003_bs8_ep10"
    assert claim_run_dir(cfg, kind="llm").name == "llm_solar-pro2"


def test_threads_claiming_at_once_get_distinct_directories(tmp_path):
    cfg = demo_config(tmp_path)
    n = 8
    start = threading.Barrier(n)  # all claim at the same moment: the case a check-then-create loses
    claimed: list[Path] = []
    lock = threading.Lock()

    def claim():
        start.wait()
        run_dir = claim_run_dir(cfg)
        with lock:
            claimed.append(run_dir)

    threads = [threading.Thread(target=claim) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = {tmp_path / "runs/demo"} | {tmp_path / f"runs/demo-{i}" for i in range(2, n + 1)}
    assert len(claimed) == n and set(claimed) == expected


def test_processes_claiming_at_once_get_distinct_directories(tmp_path):
    code = (
        "import sys; from dsum.config import load_config; from dsum.runs.directory import claim_run_dir; "
        "print(claim_run_dir(load_config('configs/demo.yaml', [f'general.output_dir={sys.argv[1]}'])))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "runs")], cwd=REPO, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    claimed = [proc.communicate(timeout=120)[0].strip() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    assert sorted(claimed) == sorted(str(tmp_path / name) for name in ("runs/demo", "runs/demo-2", "runs/demo-3", "runs/demo-4"))
    pids = {read_status(Path(path))["pid"] for path in claimed}
    assert pids == {proc.pid for proc in procs}  # each directory marked by the process that claimed it


def test_an_output_dir_that_is_a_file_is_a_user_error(tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    with pytest.raises(UserError, match="cannot create the runs folder"):
        claim_run_dir(demo_config(tmp_path))


# ---------------------------------------------------------------------------------------------
# Resuming


def test_resume_picks_the_crashed_run_not_a_newer_finished_one(tmp_path):
    runs = tmp_path / "runs"
    crashed = fake_run(runs / "demo", "running", [4], checkpoint_time=1_000_000)
    fake_run(runs / "demo-2", "finished", [8], checkpoint_time=2_000_000)  # newer, but done
    fake_run(runs / "demo-3", "failed")  # no checkpoint: nothing to resume from
    fake_run(runs / "demo-old", "running", [9], checkpoint_time=3_000_000)  # another name
    assert run_status(crashed) == "crashed"

    assert claim_run_dir(demo_config(tmp_path), resume=True) == crashed
    state = read_status(crashed)
    assert (state["status"], state["pid"], state["kind"]) == ("running", os.getpid(), "train")
    assert state["started"] == "2026-01-02T03:04:05+00:00"  # a resumed run keeps its first start
    assert not (runs / "demo-4").exists()


def test_resume_picks_the_unfinished_run_with_the_newest_checkpoint(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs / "demo", "failed", [4], checkpoint_time=3_000_000)  # Ctrl-C marks a run failed
    fake_run(runs / "demo-2", "running", [4, 8], checkpoint_time=1_000_000)
    live = fake_run(runs / "demo-3", "failed", [2], checkpoint_time=4_000_000)
    mark_status(live, "running")  # alive on this host (this process): never resumed behind its back
    assert claim_run_dir(demo_config(tmp_path), resume=True) == runs / "demo"


def test_resume_with_nothing_to_resume_says_what_it_looked_for(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs / "demo", "finished", [8])
    fake_run(runs / "demo-2", "running")
    with pytest.raises(UserError) as caught:
        claim_run_dir(demo_config(tmp_path), resume=True)
    message = str(caught.value)
    assert f"no checkpoint of an unfinished run named demo or demo-N under {runs}" in message
    assert "looked at: demo (finished), demo-2 (crashed, no checkpoint)" in message
    assert "start without --resume" in message
    with pytest.raises(UserError, match=r"looked at: none\); start without --resume"):
        claim_run_dir(demo_config(tmp_path / "empty"), resume=True)


def test_resume_dir_continues_that_run_or_says_why_not(tmp_path):
    runs = tmp_path / "runs"
    older = fake_run(runs / "demo", "running", [4], checkpoint_time=1_000_000)
    fake_run(runs / "demo-2", "running", [4], checkpoint_time=2_000_000)  # what --resume alone would pick
    cfg = demo_config(tmp_path)
    assert claim_run_dir(cfg, resume=older) == older
    assert read_status(older)["pid"] == os.getpid()

    with pytest.raises(UserError, match="still running"):
        claim_run_dir(cfg, resume=older)  # now alive: this process
    (runs / "not-a-run").mkdir()
    with pytest.raises(UserError, match=r"not-a-run: not a run directory \(no config.yaml"):
        claim_run_dir(cfg, resume=runs / "not-a-run")
    fresh = fake_run(runs / "fresh", "running")
    with pytest.raises(UserError, match="no checkpoint under .*start without --resume"):
        claim_run_dir(cfg, resume=fresh)


def test_cli_resume_dir_reaches_the_check(tmp_path):
    result = run_dsum("train", "-c", "configs/demo.yaml", "--resume-dir", str(tmp_path / "nowhere"),
                      "--set", f"general.output_dir={tmp_path}")
    assert result.returncode == 2, result.stderr
    assert "nowhere: not a run directory" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())  # nothing claimed


# ---------------------------------------------------------------------------------------------
# What reproduces a run


def test_run_files_record_config_environment_and_data_hashes_without_secrets(tmp_path, monkeypatch):
    secret = "sk-live-0123456789abcdef"
    monkeypatch.setenv("UPSTAGE_API_KEY", secret)
    monkeypatch.setattr(sys, "argv", ["dsum", "train", "--set", f"general.notes=key {secret}"])
    cfg = demo_config(tmp_path, f"general.notes=pasted the key {secret} by mistake")
    run_dir = claim_run_dir(cfg)
    dev, test = REPO / "data/sample/dev.csv", REPO / "data/sample/test.csv"
    write_run_files(run_dir, cfg, [dev, test, dev, tmp_path / "missing.csv"])

    config_text = (run_dir / "config.yaml").read_text()
    assert secret not in config_text and "pasted the key *** by mistake" in config_text
    assert load_config(run_dir / "config.yaml").training == cfg.training
    env_text = (run_dir / "environment.json").read_text()
    assert secret not in env_text
    env = json.loads(env_text)
    assert env["data_sha256"] == {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in (dev, test)}
    assert env["command"] == ["dsum", "train", "--set", "general.notes=key ***"]
    assert env["python"] == sys.version.split()[0] and "transformers" in env["packages"]


def test_environment_records_uncommitted_changes_and_the_lock_file(tmp_path):
    env = environment_record({})
    # This checkout: whether it is dirty depends on the moment, but it is a git checkout with a uv.lock.
    assert isinstance(env["git_dirty"], bool)
    assert env["uv_lock_sha256"] == hashlib.sha256((REPO / "uv.lock").read_bytes()).hexdigest()
    assert uv_lock_sha256(tmp_path) is None  # e.g. dsum installed from a wheel

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    assert git_dirty(repo) is None  # not a checkout (tmp_path is outside any repository)
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "train.py").write_text("lr = 1e-5\n")
    subprocess.run([*git, "add", "train.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    assert git_dirty(repo) is False and git_commit(repo) is not None
    (repo / "notes.txt").write_text("untracked files do not count\n")
    assert git_dirty(repo) is False
    (repo / "train.py").write_text("lr = 3e-5\n")
    assert git_dirty(repo) is True
