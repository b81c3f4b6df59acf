"""The one progress helper: rich displays and tqdm bars, in a terminal and in Jupyter alike, hidden
when dsum is quiet (`dsum -q`, `set_verbosity("quiet")`)."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

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


@contextmanager
def progress_steps(timings: dict[str, float]) -> Iterator:
    """A display of named steps, one bar each: yields `step(description, size=1)`, a context manager that yields
    `advance(n=1)`; each finished step's seconds are added to `timings` under its description."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=progress_console()) as progress:

        @contextmanager
        def step(description: str, size: int = 1) -> Iterator:
            task = progress.add_task(description, total=size)
            begin = time.perf_counter()
            yield lambda n=1: progress.advance(task, n)
            progress.update(task, completed=size)
            timings[description] = round(time.perf_counter() - begin, 3)

        yield step
