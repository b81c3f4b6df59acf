"""Checkpoints that count only when complete, and the choice of the one `--resume` continues from.

A save (DsumTrainer._save_checkpoint, dsum.verbs.faults) writes checkpoints/.partial-checkpoint-N/checkpoint-N,
then `manifest.json` (every file and its size) last, then renames the folder to checkpoints/checkpoint-N;
older checkpoints are rotated only after that. A crash, a full disk or a kill during the save leaves at
most a `.partial-*` folder, which no resume ever reads (and the next save or resume removes).

    check_free_space(folder)          # before a save: the last checkpoint's size must fit
    write_manifest(folder)            # the last file of a save
    resume_checkpoint(run_dir)        # the newest complete checkpoint; broken ones set aside as broken-checkpoint-N
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
from pathlib import Path

from dsum.util.atomic import write_json
from dsum.util.errors import RunStopped, UserError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SAVE_FAILED_EXIT = 5
_NAME = re.compile(r"checkpoint-(\d+)")
# What a resume needs besides the weights: without them the Trainer would silently start AdamW afresh,
# repeat the warm-up or change the data order (rng_state_<rank>.pth under torchrun).
NEEDED = ("optimizer.pt", "scheduler.pt", "trainer_state.json")
WEIGHTS = ("model.safetensors", "adapter_model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DISK_WORDS = re.compile(r"No space left|Disk quota|File too large|StorageFull|FileTooLarge|file write failed|unexpected pos", re.I)


def human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def step_of(folder: Path) -> int:
    return int(_NAME.fullmatch(folder.name).group(1))


def saved(folder: Path) -> list[Path]:
    """checkpoint-N folders under `folder`, newest (highest step) first."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and _NAME.fullmatch(p.name)), key=step_of, reverse=True)


# ---------------------------------------------------------------------------------------------
# Saving


def write_manifest(folder: Path) -> None:
    """manifest.json: every file of the checkpoint with its size; written last, so its presence means complete."""
    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    for path in [*folder.rglob("*"), folder]:
        if path.is_file():  # data on disk before the manifest says it is there
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    write_json(folder / MANIFEST, {"files": files})


def checkpoint_size(folder: Path) -> int:
    manifest = read_manifest(folder)
    return sum(manifest["files"].values()) if manifest else sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def check_free_space(folder: Path, step: int) -> None:
    """Refuse a save the disk cannot hold: the newest checkpoint's size must be free where it goes."""
    previous = saved(folder)
    if not previous:
        return  # the first save: nothing to measure by; a failed write is caught instead
    needed, free = checkpoint_size(previous[0]), shutil.disk_usage(folder).free
    if free < needed:
        raise RunStopped(
            f"not enough disk space for checkpoint-{step}: it needs about {human(needed)} (the size of {previous[0].name}), "
            f"{human(free)} free on {folder}; nothing was written and {previous[0].name} is kept: free space, then "
            "`dsum train ... --resume` continues from it",
            "save_failed", SAVE_FAILED_EXIT,
        )


def is_disk_error(exc: BaseException) -> bool:
    """A write that failed for lack of room (full disk, quota, file size limit), whichever layer reported it
    (OSError; torch.save's RuntimeError; safetensors' error)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
            return True
        if _DISK_WORDS.search(str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def save_failed(step: int, folder: Path, exc: BaseException) -> RunStopped:
    kept = saved(folder)
    reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    free = human(shutil.disk_usage(folder).free)
    return RunStopped(
        f"checkpoint-{step} could not be written ({reason}; {free} free on {folder}): the partial folder is removed, "
        f"{'the checkpoints before it are kept (newest: ' + kept[0].name + ')' if kept else 'no earlier checkpoint exists'}; "
        "free space, then `dsum train ... --resume`" + (" continues from it" if kept else " is not possible: train again"),
        "save_failed", SAVE_FAILED_EXIT,
    )


def remove_partials(folder: Path) -> None:
    """Leftovers of a save that was killed (kill -9, power): never complete, never read."""
    for partial in folder.glob(".partial-checkpoint-*"):
        shutil.rmtree(partial, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Resuming


def read_manifest(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) else None


def checkpoint_problem(folder: Path) -> str | None:
    """Why `folder` cannot be resumed from (a file missing, shorter than written, unreadable), or None."""
    manifest = read_manifest(folder)
    if manifest is None:
        return "no manifest.json (its save never finished)"
    files = manifest["files"]
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} is {path.stat().st_size} bytes, {size} were written (truncated or changed)"
    if not any(name in files for name in WEIGHTS):
        return "no model weights"
    missing = [name for name in NEEDED if name not in files]
    if not any(name.startswith("rng_state") for name in files):
        missing.append("rng_state.pth")
    if missing:
        return f"no {', '.join(missing)} (the optimizer, schedule or data order could not continue)"
    return _unreadable(folder, files)


def _unreadable(folder: Path, files: dict) -> str | None:
    """The small files opened for real: a same-size corruption of a weights header or an RNG state shows here."""
    import torch
    from safetensors import safe_open

    for name in files:
        try:
            if name.endswith(".safetensors"):
                with safe_open(str(folder / name), "pt") as handle:
                    handle.keys()
            elif name.startswith("rng_state"):
                torch.load(folder / name, weights_only=False)
            elif name.endswith(".json"):
                json.loads((folder / name).read_text(encoding="utf-8"))
        except Exception as exc:  # any failure to read is the same verdict: not resumable
            return f"{name} does not read ({type(exc).__name__})"
    return None


def resume_checkpoint(run_dir: Path) -> Path:
    """The newest complete checkpoint of `run_dir`. Each broken newer one is named in one warning and set
    aside as checkpoints/broken-checkpoint-N (kept for inspection, never resumed); none left → UserError."""
    folder = Path(run_dir) / "checkpoints"
    remove_partials(folder)
    set_aside = []
    for checkpoint in saved(folder):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            if set_aside:
                log.warning(f"--resume: {'; '.join(set_aside)}; resuming from {checkpoint.name} instead")
            return checkpoint
        target = folder / f"broken-{checkpoint.name}"
        shutil.rmtree(target, ignore_errors=True)
        checkpoint.rename(target)
        set_aside.append(f"{checkpoint.name} is broken ({problem}), set aside as {target.name}")
    raise UserError(
        f"--resume: no complete checkpoint in {folder} ({'; '.join(set_aside) or 'none saved'}); "
        "start the run again without --resume"
    )
