"""Faults a long run survives, each injected for real (dsum.verbs.faults, dsum.runs.checkpoints, dsum.util.oom):
a learning rate that diverges, Ctrl-C (a real SIGINT to this process), an allocation failure raised by the
model's own encoder (the exception types CPU and CUDA raise), a truncated checkpoint, a size-limited tmpfs.

The module's runs share one stopped run (`stopped`): out of memory in training and generation, then Ctrl-C."""

import json
import logging
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_dsum, tiny_overrides
from transformers import TrainerCallback

from dsum.config import load_config
from dsum.runs.checkpoints import checkpoint_problem, resume_checkpoint, saved
from dsum.runs.read import read_status, run_status
from dsum.util.errors import RunStopped, UserError
from dsum.verbs.faults import DivergenceGuard, Interruption
from dsum.verbs.train import train

CPU_OOM = "DefaultCPUAllocator: can't allocate memory: you tried to allocate 268435456 bytes. Error code 12 (Cannot allocate memory)"


def sets(*overrides: str) -> list[str]:
    return sum([["--set", o] for o in overrides], [])


def stopped_line(stderr: str) -> str:
    """The CLI's one line for a stopped run (the Trainer's progress bar may be redrawn around it)."""
    lines = re.findall(r"stopped: [^\r\n]*", stderr)
    assert len(lines) == 1, stderr
    return lines[0]


class Records(logging.Handler):
    """The warnings dsum logs during a run, kept for the assertions."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())

    def __enter__(self):
        logging.getLogger("dsum").addHandler(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger("dsum").removeHandler(self)


class MemoryLimit(TrainerCallback):
    """The model's encoder fails to allocate above a batch size, as a device with too little memory does:
    training batches above `train_rows` get the CPU allocator's RuntimeError, generation batches above
    `generate_rows` CUDA's torch.OutOfMemoryError. Counted, so a test sees the back-off happen."""

    def __init__(self, train_rows: int, generate_rows: int):
        self.train_rows, self.generate_rows, self.raised = train_rows, generate_rows, {"train": 0, "generate": 0}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        model.get_encoder().register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        rows = (args[0] if args else kwargs["input_ids"]).shape[0]
        if module.training and rows > self.train_rows:
            self.raised["train"] += 1
            raise RuntimeError(CPU_OOM)
        if not module.training and rows > self.generate_rows:
            self.raised["generate"] += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 8 GiB")


class CtrlC(TrainerCallback):
    """A real SIGINT to this process when step `at` ends, as a user pressing Ctrl-C then."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            os.kill(os.getpid(), signal.SIGINT)


# One epoch of 10 steps, evaluated at 4 and 8 on 8 dev rows, short summaries: the faults, not the model, are tested.
STEPS = ["training.epochs=1", "training.eval_strategy=steps", "training.eval_steps=4", "training.logging_steps=1",
         "training.eval_subset=8", "generation.max_new_tokens=10"]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A run whose device holds 4 training rows and 2 generation rows, stopped by Ctrl-C after step 5;
    a copy of it as it stood then (`snapshot`)."""
    tmp = tmp_path_factory.mktemp("stopped")
    cfg = load_config(REPO / "configs/demo.yaml", tiny_overrides(tmp, *STEPS))
    memory = MemoryLimit(train_rows=4, generate_rows=2)
    with Records() as records, pytest.raises(RunStopped) as stop:
        train(cfg, callbacks=[memory, CtrlC(at=5)])
    run_dir = tmp / "runs" / "demo"
    shutil.copytree(run_dir, tmp / "snapshot")
    return {"cfg": cfg, "run_dir": run_dir, "snapshot": tmp / "snapshot", "stop": stop.value, "warnings": records.lines, "memory": memory}


def test_ctrl_c_saves_at_the_step_boundary_and_exits_130(stopped):
    stop, run_dir = stopped["stop"], stopped["run_dir"]
    assert (stop.exit_code, stop.status) == (130, "interrupted")
    assert "SIGINT received: checkpoint-5 saved" in str(stop) and "--resume" in str(stop)
    assert run_status(run_dir) == "interrupted" and read_status(run_dir)["status"] == "interrupted"
    assert [p.name for p in saved(run_dir / "checkpoints")] == ["checkpoint-5", "checkpoint-4"]
    assert all(checkpoint_problem(p) is None for p in saved(run_dir / "checkpoints"))  # complete: manifest, sizes
    assert not list((run_dir / "checkpoints").glob(".partial-*"))
    state = json.loads((run_dir / "checkpoints/checkpoint-5/trainer_state.json").read_text())
    assert state["global_step"] == 5 and state["best_model_checkpoint"] == str(run_dir / "checkpoints/checkpoint-4")
    listing = run_dsum("runs", "--dir", str(run_dir.parent))
    assert listing.returncode == 0 and "interrupted" in listing.stdout


def test_second_ctrl_c_stops_at_once():
    """Real SIGINTs to this process with the handler installed: the first only sets the flag."""
    interruption = Interruption()
    with interruption:
        os.kill(os.getpid(), signal.SIGINT)
        assert interruption.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back after training


def test_out_of_memory_halves_the_micro_batch_and_the_generation_batch(stopped):
    run_dir, warnings, memory = stopped["run_dir"], stopped["warnings"], stopped["memory"]
    sizes = json.loads((run_dir / "batch_sizes.json").read_text())
    assert sizes == {"batch_size": 4, "gradient_accumulation_steps": 2, "split": 2,
                     "configured": {"batch_size": 8, "gradient_accumulation_steps": 1}}
    assert memory.raised["train"] == 1  # once: the split stays in force for the later steps
    training = [w for w in warnings if "training step" in w]
    assert len(training) == 1 and "micro-batch 4 × gradient accumulation 2" in training[0] and "step 1" in training[0]
    # Generation at step 4's evaluation: 8 dev rows → 4 → 2, every row generated once.
    assert [w for w in warnings if "generating" in w] == [
        "out of memory generating 8 dialogues at once: batches of 4 from now on",
        "out of memory generating 4 dialogues at once: batches of 2 from now on",
    ]
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "loss" in e] == [1, 2, 3, 4, 5]  # no step lost or repeated
    assert [e["step"] for e in log if "eval_board_score" in e] == [4]


def test_out_of_memory_at_batch_1_stops_with_one_line(tmp_path):
    """A device that holds no row at all: 8 → 4 → 2 → 1, then the one line, status out_of_memory, exit 4."""
    cfg = load_config(REPO / "configs/demo.yaml", tiny_overrides(tmp_path, *STEPS))
    memory = MemoryLimit(train_rows=0, generate_rows=0)
    with pytest.raises(RunStopped) as stop:
        train(cfg, callbacks=[memory])
    assert (stop.value.exit_code, stop.value.status, memory.raised["train"]) == (4, "out_of_memory", 4)
    assert str(stop.value).startswith("out of memory in the training step at batch size 1 (an allocation of 268435456 bytes failed): ")
    assert "training.gradient_checkpointing=true" in str(stop.value) and "dsum doctor" in str(stop.value)
    assert run_status(tmp_path / "runs/demo") == "out_of_memory"
    assert json.loads((tmp_path / "runs/demo/batch_sizes.json").read_text())["batch_size"] == 1


def test_broken_checkpoint_is_set_aside_and_resume_keeps_the_batch_sizes(stopped):
    """checkpoint-5's weights truncated: resume names it, sets it aside and continues from checkpoint-4,
    with the micro-batch split of batch_sizes.json (the memory limit, still there, never trips in training)."""
    run_dir, cfg = stopped["run_dir"], stopped["cfg"]
    weights = run_dir / "checkpoints/checkpoint-5/model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    memory = MemoryLimit(train_rows=4, generate_rows=100)
    with Records() as records:
        assert train(cfg, resume=run_dir, callbacks=[memory]) == run_dir
    assert memory.raised["train"] == 0
    assert records.lines[0].startswith("--resume: checkpoint-5 is broken (model.safetensors is ")
    assert "set aside as broken-checkpoint-5; resuming from checkpoint-4 instead" in records.lines[0]
    assert (run_dir / "checkpoints/broken-checkpoint-5").is_dir() and run_status(run_dir) == "finished"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 10
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "loss" in e] == list(range(1, 11))  # step 5 again, once


@pytest.mark.parametrize("damage", ["no manifest", "optimizer.pt", "scheduler.pt", "rng_state.pth", "bad rng"])
def test_each_kind_of_broken_checkpoint_is_detected(stopped, tmp_path, damage):
    run_dir = tmp_path / "run"
    shutil.copytree(stopped["snapshot"], run_dir)
    newest = run_dir / "checkpoints/checkpoint-5"
    if damage == "no manifest":
        (newest / "manifest.json").unlink()
    elif damage == "bad rng":
        path = newest / "rng_state.pth"
        path.write_bytes(b"\0" * path.stat().st_size)  # the same size: only reading it shows the damage
    else:
        (newest / damage).unlink()
    assert resume_checkpoint(run_dir) == run_dir / "checkpoints/checkpoint-4"
    assert (run_dir / "checkpoints/broken-checkpoint-5").is_dir()


def test_no_complete_checkpoint_left_is_one_line_and_exit_2(stopped, tmp_path):
    run_dir = tmp_path / "demo"
    shutil.copytree(stopped["snapshot"], run_dir)
    for checkpoint in saved(run_dir / "checkpoints"):
        (checkpoint / "optimizer.pt").unlink()
    result = run_dsum("train", "-c", "configs/demo.yaml", "--resume-dir", str(run_dir), *sets(*tiny_overrides(tmp_path)))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line, = result.stderr.strip().splitlines()
    assert line.startswith("error: --resume: no complete checkpoint in") and "optimizer.pt is missing" in line
    assert not saved(run_dir / "checkpoints")  # both set aside, never resumed with a fresh optimizer
    with pytest.raises(UserError):
        resume_checkpoint(run_dir)


# ---------------------------------------------------------------------------------------------
# Divergence


def test_divergence_stops_before_the_optimizer_steps(tmp_path):
    """The issue's example: learning_rate=50 on the demo; a checkpoint at step 2 precedes it."""
    result = run_dsum("train", "-c", "configs/demo.yaml",
                      *sets(*tiny_overrides(tmp_path, "training.learning_rate=50", "training.eval_strategy=steps", "training.eval_steps=2",
                                            "training.eval_subset=4", "generation.max_new_tokens=10")))
    assert result.returncode == 3, result.stderr
    line = stopped_line(result.stderr)
    assert line.startswith("stopped: training diverged at step 3 of 20: the loss ") and "over 10 × its lowest running average" in line
    run_dir = tmp_path / "runs/demo"
    assert f"best checkpoint is kept: {run_dir}/checkpoints/checkpoint-2" in line and "lower training.learning_rate (now 50)" in line
    assert run_status(run_dir) == "diverged" and not (run_dir / "metrics.json").exists()
    assert [p.name for p in saved(run_dir / "checkpoints")] == ["checkpoint-2"]
    from safetensors.torch import load_file

    weights = load_file(run_dir / "checkpoints/checkpoint-2/model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert "diverged" in run_dsum("runs", "--dir", str(tmp_path / "runs")).stdout


def test_divergence_rule():
    """The rule on numbers: non-finite loss or gradient norm, or a loss 10× above its lowest running average;
    under fp16 a non-finite gradient norm is the loss scaler's (it skips the step) up to 20 in a row."""
    healthy = [7.6, 7.5, 7.1, 6.4, 5.9, 6.3, 5.2, 4.8, 5.6, 4.1, 3.9, 4.6, 3.2, 3.5, 2.9]
    guard = DivergenceGuard(fp16=False)
    assert [guard.problem(loss, 1.0) for loss in healthy] == [None] * len(healthy)
    assert guard.problem(float("nan"), 1.0) == "the loss is nan"
    assert guard.problem(3.0, float("inf")) == "the gradient norm is inf"
    assert "over 10 ×" in guard.problem(60.0, 1.0)
    fp16 = DivergenceGuard(fp16=True)
    assert [fp16.problem(7.0, float("inf")) for _ in range(19)] == [None] * 19
    assert fp16.problem(7.0, 2.0) is None  # a finite step resets the count
    assert [fp16.problem(7.0, float("inf")) for _ in range(20)][-1].startswith("fp16's loss scaler skipped 20 steps")


# ---------------------------------------------------------------------------------------------
# A full disk


@pytest.fixture
def tmpfs(tmp_path):
    """A size-limited tmpfs of its own (root can mount one here); skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")

    def resize(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)

    yield mount, resize
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_keeps_complete_checkpoints_only(tmpfs, tmp_path):
    mount, resize = tmpfs
    overrides = [f"general.output_dir={mount}", *tiny_overrides(tmp_path)[1:], "training.epochs=1",
                 "training.eval_strategy=steps", "training.eval_steps=5", "training.eval_subset=4", "generation.max_new_tokens=10"]
    # 200 kB: the first checkpoint (~0.5 MB) fails half-written.
    first = run_dsum("train", "-c", "configs/demo.yaml", *sets(*overrides))
    assert first.returncode == 5, first.stderr
    line = stopped_line(first.stderr)
    assert line.startswith("stopped: checkpoint-5 could not be written (") and "no earlier checkpoint exists" in line
    assert not list((mount / "demo/checkpoints").iterdir())  # the partial folder is gone
    assert run_status(mount / "demo") == "save_failed"

    # Room for one checkpoint, not two: the second save is refused before it writes anything.
    shutil.rmtree(mount / "demo")
    resize("1600k")
    second = run_dsum("train", "-c", "configs/demo.yaml", *sets(*overrides))
    assert second.returncode == 5, second.stderr
    line = stopped_line(second.stderr)
    assert line.startswith("stopped: not enough disk space for checkpoint-10: it needs about ") and f"free on {mount}/demo/checkpoints" in line
    assert [p.name for p in saved(mount / "demo/checkpoints")] == ["checkpoint-5"]
    assert checkpoint_problem(mount / "demo/checkpoints/checkpoint-5") is None

    resize("20m")  # space freed: --resume continues from checkpoint-5 and finishes
    resumed = run_dsum("train", "-c", "configs/demo.yaml", "--resume", *sets(*overrides))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((mount / "demo/metrics.json").read_text())["global_step"] == 10


# ---------------------------------------------------------------------------------------------
# A tracker that cannot be reached: a closed port on 127.0.0.1


def closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed when the block ends: connections are refused


def tracker_config(tmp_path, *overrides: str):
    return load_config(REPO / "configs/demo.yaml", [f"general.output_dir={tmp_path}", *overrides])


@pytest.fixture
def wandb_service_stopped():
    """W&B's service, started in this process by the test, stopped after it: it leaves WANDB_SERVICE in the
    environment, which a later test's monkeypatch could restore after that service is gone."""
    yield
    import wandb

    wandb.teardown()


def test_wandb_unreachable_at_the_start_goes_offline(tmp_path, monkeypatch, wandb_service_stopped):
    from dsum.runs.tracking import start_tracker

    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "3")  # W&B's own setting (90 s by default)
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with Records() as records:
        tracker = start_tracker(tracker_config(tmp_path, "tracking.backend=wandb", "tracking.mode=online"), run_dir)
        tracker.log({"loss": 1.0}, 1)
        tracker.finish({"dev": {"score": 1.0}})
    assert json.loads((run_dir / "tracking.json").read_text())["mode"] == "offline"
    [warning] = records.lines
    assert warning.startswith("W&B cannot be reached (") and f"`wandb sync {run_dir}/wandb/offline-run-*`" in warning
    assert len(list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))) == 1


def test_mlflow_unreachable_at_the_start_or_mid_run(tmp_path, monkeypatch):
    import mlflow

    from dsum.runs.tracking import start_tracker

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own retries: minutes by default
    server = f"http://127.0.0.1:{closed_port()}"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(UserError, match=r"^tracking.backend=mlflow cannot be reached .*set tracking.required=false"):
        start_tracker(tracker_config(tmp_path, "tracking.backend=mlflow", f"tracking.uri={server}", "tracking.required=true"), run_dir)
    with Records() as records:
        tracker = start_tracker(tracker_config(tmp_path, "tracking.backend=mlflow", f"tracking.uri={server}"), run_dir)
        local = f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
        assert records.lines[0].startswith(f"MLflow at {server} cannot be reached (") and f"local store {local}" in records.lines[0]
        tracker.log({"loss": 2.0}, 1)
        mlflow.set_tracking_uri(server)  # the store goes away mid-run
        tracker.log({"loss": 1.5}, 2)
        tracker.log({"loss": 1.0}, 3)
        tracker.finish({"dev": {"score": 1.0}})
    assert len(records.lines) == 2 and records.lines[1].startswith("tracking: mlflow stopped answering (")
    mlflow.set_tracking_uri(local)
    assert mlflow.active_run() is None  # let go of: a later run (a tuning trial) can start
    from mlflow.tracking import MlflowClient

    history = MlflowClient(tracking_uri=local).get_metric_history(tracker.run.info.run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.0)]
