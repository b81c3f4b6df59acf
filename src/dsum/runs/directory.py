"""The run directory, the unit of record: its name, claimed atomically; its status; what reproduces it;
which one `--resume` continues.

This is the one module that creates `runs/<name>/` and writes `status.json`, `config.yaml` and
`environment.json`; runs.py only reads them. A command that makes a run does:

    run_dir = claim_run_dir(cfg)                 # exists now, status "running", nobody else's
    write_run_files(run_dir, cfg, data_paths)    # config.yaml + environment.json, secrets redacted
    ...                                          # the work
    mark_status(run_dir, "finished")             # or "failed" on any exception, Ctrl-C included
"""

from __future__ import annotations

import itertools
import os
import platform
import re
import socket
import subprocess
import sys
from collections.abc import Iterable
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from dsum.util.atomic import atomic_write_text, write_json
from dsum.config import Config
from dsum.data.files import file_sha256
from dsum.util.errors import UserError
from dsum.runs.read import INFERRED, STATUSES, is_run_dir, read_status, run_status
from dsum.util.secrets import redact

PACKAGE_DIR = Path(__file__).parents[1]  # src/dsum
PROJECT_ROOT = PACKAGE_DIR.parents[1]  # src/dsum → the checkout, with pyproject.toml and uv.lock
RECORDED_PACKAGES = ("dsum", "torch", "transformers", "tokenizers", "accelerate", "mecab-ko", "kiwipiepy", "pandas")
# What status.json may hold (meanings in dsum.runs.read.STATUSES). diverged, interrupted, save_failed,
# out_of_memory: stopped by a fault dsum survived (dsum.verbs.faults, dsum.runs.checkpoints).
MARKED_STATUSES = tuple(status for status in STATUSES if status not in INFERRED)
KINDS = ("train", "llm")  # what made the run: `dsum train` or `dsum llm summarize`


# ---------------------------------------------------------------------------------------------
# Naming and claiming


def default_run_name(cfg: Config, kind: str = "train") -> str:
    """`{model}_{data_version}_lr{lr}_bs{bs}_ep{epochs}` (the team's convention); `llm_{model}` for API runs."""
    if kind == "llm":
        return f"llm_{Path(cfg.llm.model).name}"
    if cfg.model.tiny is not None:
        model = f"tiny-{cfg.model.tiny.architecture}"
    else:
        model = Path(cfg.model.name.rstrip("/")).name
    t = cfg.training
    return f"{model}_{cfg.general.data_version}_lr{t.learning_rate:g}_bs{t.batch_size}_ep{t.epochs:g}"


def base_run_dir(cfg: Config, kind: str = "train") -> Path:
    """<output_dir>/<run name>: the first choice; taken names get `-2`, `-3`, ..."""
    return cfg.general.output_dir / (cfg.general.run_name or default_run_name(cfg, kind))


def claim_run_dir(cfg: Config, resume: bool | Path = False, kind: str = "train") -> Path:
    """A run directory that is this process's alone, marked running (status.json: pid, host, kind).

    resume=False: a new directory, created atomically: the base name, or the first free of `-2`,
    `-3`, ... (two commands started together never share one). resume=True: the run of this config
    to continue (see `resume_dir`). resume=Path: that run directory, checked.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if resume is False:
        run_dir = _create_free(base_run_dir(cfg, kind))
        mark_status(run_dir, "running", kind=kind)
    else:
        run_dir = resume_dir(cfg, resume, kind)
        mark_status(run_dir, "running")  # keeps its first start and its kind
    return run_dir


def _create_free(base: Path) -> Path:
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the runs folder {base.parent}: {exc.strerror or exc}; check general.output_dir") from None
    for n in itertools.count(1):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir()  # atomic: of two processes creating one name, exactly one succeeds
        except FileExistsError:
            continue  # taken (by an older run, or by a command started at the same moment)
        except OSError as exc:
            raise UserError(f"cannot create the run directory {path}: {exc.strerror or exc}; check general.output_dir") from None
        return path
    raise AssertionError("unreachable")


def checkpoints(run_dir: Path) -> list[Path]:
    """The Trainer's saved checkpoints of a run (what `--resume` continues from)."""
    return [p for p in (Path(run_dir) / "checkpoints").glob("checkpoint-*") if p.is_dir()]


def resume_dir(cfg: Config, resume: bool | Path = True, kind: str = "train") -> Path:
    """The run to continue, without marking it.

    resume=True: among <base>, <base>-2, ... the one with the newest checkpoint that did not finish
    and is not running here (a live pid on this host); a crashed, failed or killed run. resume=Path:
    that directory, if it is a run directory with a checkpoint and not running. Else a UserError.
    """
    if resume is not True:
        return _check_resumable(Path(resume))
    base = base_run_dir(cfg, kind)
    same_name = re.compile(rf"{re.escape(base.name)}(-\d+)?")
    found = sorted(p for p in base.parent.iterdir() if same_name.fullmatch(p.name) and p.is_dir()) if base.parent.is_dir() else []
    looked, candidates = [], []
    for path in found:
        status = run_status(path)
        saved = checkpoints(path)
        if status in ("finished", "running") or not saved:
            looked.append(f"{path.name} ({status}{'' if saved else ', no checkpoint'})")
        else:
            candidates.append((max(p.stat().st_mtime_ns for p in saved), path.name, path))
    if candidates:
        return max(candidates)[2]
    raise UserError(
        f"--resume: no checkpoint of an unfinished run named {base.name} or {base.name}-N under {base.parent} "
        f"(looked at: {', '.join(looked) or 'none'}); start without --resume, or name the run: --resume-dir DIR"
    )


def _check_resumable(path: Path) -> Path:
    if not is_run_dir(path):
        raise UserError(f"--resume-dir {path}: not a run directory (no config.yaml there); give runs/<name> of the run to continue")
    if not checkpoints(path):
        raise UserError(f"--resume-dir {path}: no checkpoint under {path / 'checkpoints'} (it stopped before its first save); start without --resume")
    if run_status(path) == "running":
        raise UserError(f"--resume-dir {path}: still running (pid {read_status(path).get('pid')} on this host); stop it first")
    return path


# ---------------------------------------------------------------------------------------------
# Status


def mark_status(run_dir: Path, status: str, kind: str | None = None) -> None:
    """Write run_dir/status.json: status, kind, this process and host, when it started and last changed.

    A resumed run keeps its first start; kind=None keeps the recorded kind ("train" if none).
    """
    if status not in MARKED_STATUSES:
        raise ValueError(f"status must be one of {MARKED_STATUSES}, not {status!r}")
    path = Path(run_dir) / "status.json"
    now = datetime.now().astimezone().isoformat(timespec="seconds")
    old = read_status(run_dir)
    write_json(
        path,
        {
            "status": status,
            "kind": kind or old.get("kind", "train"),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": old.get("started", now),
            "updated": now,
        },
    )


# ---------------------------------------------------------------------------------------------
# What reproduces a run


def write_run_files(run_dir: Path, cfg: Config, data_paths: Iterable[Path]) -> None:
    """config.yaml (the resolved config) and environment.json (commit, uncommitted changes or not,
    uv.lock and data sha256 of the `data_paths` that exist, versions), with every secret of the
    environment replaced by `***`."""
    run_dir = Path(run_dir)
    atomic_write_text(run_dir / "config.yaml", redact(cfg.to_yaml()))
    hashes = {str(p): file_sha256(p) for p in dict.fromkeys(map(Path, data_paths)) if p.is_file()}
    write_json(run_dir / "environment.json", redact(environment_record(hashes)))


def _git(*args: str, cwd: Path) -> str | None:
    """git's output in `cwd`; None when git is missing or `cwd` is not in a checkout."""
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def git_commit(checkout: Path = PACKAGE_DIR) -> str | None:
    """The commit of dsum's own checkout, wherever the command is run from."""
    return (_git("rev-parse", "HEAD", cwd=checkout) or "").strip() or None


def git_dirty(checkout: Path = PACKAGE_DIR) -> bool | None:
    """Whether tracked files differ from the commit (so the commit alone does not reproduce the run).

    Untracked files do not count, as in `git describe --dirty`: a notebook or notes left in the
    checkout would otherwise mark every run. None when `checkout` is not a git checkout.
    """
    # --no-optional-locks: a read, not an index refresh that could collide with the user's own git.
    out = _git("--no-optional-locks", "status", "--porcelain", "--untracked-files=no", cwd=checkout)
    return None if out is None else bool(out.strip())


def uv_lock_sha256(root: Path = PROJECT_ROOT) -> str | None:
    """sha256 of the project's uv.lock (the exact versions `uv sync` installs); None without one,
    as when dsum is installed from a wheel rather than run from its checkout."""
    lock = root / "uv.lock"
    return file_sha256(lock) if lock.is_file() else None


def package_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in RECORDED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def environment_record(data_hashes: dict[str, str]) -> dict[str, Any]:
    """What a teammate needs to reproduce the run besides config.yaml."""
    return {
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "uv_lock_sha256": uv_lock_sha256(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "data_sha256": data_hashes,
        "command": sys.argv,
    }

