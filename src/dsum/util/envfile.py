"""Secrets (UPSTAGE_API_KEY, WANDB_API_KEY, HF_TOKEN) from a `.env` file, for the CLI and the library alike.

Looked for from the current directory upward (a shell in the repo root and a notebook in examples/
find the same file), then from dsum's own folder upward (the checkout it is installed from).
Variables already in the environment win; nothing is printed.
"""

from __future__ import annotations

from pathlib import Path

_loaded = False


def load_env_file() -> list[Path]:
    """Load the `.env` files once per process; returns the files read (none after the first call)."""
    global _loaded
    if _loaded:
        return []
    _loaded = True
    from dotenv import load_dotenv

    read = []
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        found = next((folder / ".env" for folder in (start, *start.parents) if (folder / ".env").is_file()), None)
        if found is not None and found not in read:
            load_dotenv(found, override=False)
            read.append(found)
    return read
