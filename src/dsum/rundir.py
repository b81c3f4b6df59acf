"""The run directory, the unit of record: its name, atomic writes, and what reproduces it."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from dsum.config import Config

RECORDED_PACKAGES = ("dsum", "torch", "transformers", "tokenizers", "accelerate", "mecab-ko", "kiwipiepy", "pandas")


def default_run_name(cfg: Config) -> str:
    """`{model}_{data_version}_lr{lr}_bs{bs}_ep{epochs}`, the team's naming convention."""
    if cfg.model.tiny is not None:
        model = f"tiny-{cfg.model.tiny.architecture}"
    else:
        model = Path(cfg.model.name.rstrip("/")).name
    t = cfg.training
    return f"{model}_{cfg.general.data_version}_lr{t.learning_rate:g}_bs{t.batch_size}_ep{t.epochs:g}"


def choose_run_dir(cfg: Config, resume: bool) -> Path:
    """A new directory (suffixed `-2`, `-3`, ... when the name is taken), or the latest one to resume."""
    base = cfg.general.output_dir / (cfg.general.run_name or default_run_name(cfg))
    taken = [base] + [base.with_name(f"{base.name}-{n}") for n in range(2, 1000)]
    existing = [path for path in taken if path.exists()]
    if resume:
        return existing[-1] if existing else base
    return next(path for path in taken if not path.exists())


def git_commit() -> str | None:
    try:
        # The commit of dsum's own checkout, wherever the command is run from.
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, cwd=Path(__file__).parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


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
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "data_sha256": data_hashes,
        "command": sys.argv,
    }
