"""The one progress helper: rich displays and tqdm bars, in a terminal and in Jupyter alike, hidden
when dsum is quiet (`dsum -q`, `set_verbosity("quiet")`)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

from rich.console import Console

from dsum.util.verbosity import is_quiet


def progress_console() -> Console:
    """stderr in a terminal; in Jupyter a live widget (rich needs ipywidgets for it), else the final
    state as plain text instead of a warning at every refresh; a silent console when dsum is quiet."""
    if is_quiet():
        return Console(stderr=True, quiet=True)
    console = Console(stderr=True)
    if console.is_jupyter and importlib.util.find_spec("ipywidgets") is None:
        # force_terminal=False: ipykernel sets FORCE_COLOR, which would make rich redraw with escape codes.
        return Console(stderr=True, force_jupyter=False, force_terminal=False)
    return console


def progress_bar(items: Iterable, total: int | None = None, description: str = "", unit: str = "it", show: bool = True):
    """`items` with a tqdm bar (a notebook widget in Jupyter); no bar when `show` is False or dsum is quiet."""
    from tqdm.auto import tqdm

    return tqdm(items, total=total, desc=description, unit=unit, disable=not show or is_quiet())
