"""The console that rich progress displays draw on, in a terminal and in Jupyter alike."""

from __future__ import annotations

import importlib.util

from rich.console import Console


def progress_console() -> Console:
    """stderr in a terminal; in Jupyter a live widget (rich needs ipywidgets for it), else the final
    state as plain text instead of a warning at every refresh."""
    console = Console(stderr=True)
    if console.is_jupyter and importlib.util.find_spec("ipywidgets") is None:
        # force_terminal=False: ipykernel sets FORCE_COLOR, which would make rich redraw with escape codes.
        return Console(stderr=True, force_jupyter=False, force_terminal=False)
    return console
