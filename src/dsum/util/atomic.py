"""Atomic file writes: a crash or Ctrl-C never leaves half a file where a whole one was expected."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from dsum.util.errors import UserError


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder (same file system), then rename over `path`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def check_new_folder(out: Path, what: str) -> None:
    """Refuse an `out` that exists and is not an empty folder: ask before the work, new_folder asks again."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists: choose a new folder ({what} never overwrites)")


@contextlib.contextmanager
def new_folder(out: Path, what: str):
    """Yield a temporary folder beside `out` that becomes `out` when the block ends, or vanishes on an error.

    `out` must not exist (an empty folder is fine): what dsum writes as a folder never overwrites one.
    """
    out = Path(out)
    check_new_folder(out, what)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; a checkpoint is an ordinary folder
        if out.is_dir():
            out.rmdir()  # empty (checked above); rename cannot replace a folder that holds files
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def cache_folder(folder: Path, done_file: str):
    """Yield a temporary folder beside `folder` that becomes `folder` when the block ends, or vanishes on an error:
    a cache entry (a converted model) is whole or absent. The block writes `done_file` last; when another process
    finished the same entry first, its copy is kept and this one dropped."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        yield staging
        try:
            staging.rename(folder)
        except OSError:
            if not (folder / done_file).is_file():  # not another process's finished entry: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
