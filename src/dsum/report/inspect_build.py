"""`dsum inspect RUN [RUN_B]`: read the systems, compute the numbers, write inspect.html and inspect.json."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from dsum.report.inspect_data import inspect_data
from dsum.report.inspect_load import System, load_system
from dsum.report.inspect_page import render_inspect
from dsum.util.atomic import atomic_write_text, write_json
from dsum.util.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InspectFiles:
    html: Path
    json: Path
    data: dict  # what inspect.json holds

    @property
    def seconds(self) -> float:
        return self.data["seconds"]


def build_inspect(
    run: str | Path, run_b: str | Path | None = None, dev: str | Path | None = None, out: str | Path | None = None,
    runs_dir: str | Path = "runs", analyser: str = "mecab",
) -> InspectFiles:
    """The page of one system (a run, a K-fold parent, a predictions file) or of two compared row by row;
    `out` is the HTML path (default: inside the run, see default_out), the JSON goes beside it."""
    systems = [load_system(run, dev, Path(runs_dir))]
    if run_b is not None:
        systems.append(load_system(run_b, dev, Path(runs_dir)))
    html = Path(out) if out is not None else default_out(systems)
    if html.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out {html}: give the page an .html name (inspect.json is written beside it)")
    if html.is_dir():
        raise UserError(f"--out {html} is a folder: give the page's file name, e.g. {html / 'inspect.html'}")
    data = inspect_data(systems, analyser)
    json_path = html.with_suffix(".json")
    write_json(json_path, data)
    atomic_write_text(html, render_inspect(data))
    log.debug("inspect: %d rows in %.1f s", data["rows_total"], data["seconds"])
    return InspectFiles(html, json_path, data)


def default_out(systems: list[System]) -> Path:
    """One run or K-fold parent: <run>/inspect.html; a file: <file stem>_inspect.html beside it; two
    systems: inspect_<A>_vs_<B>.html beside A (runs/inspect_demo_vs_demo-2.html)."""
    first = Path(systems[0].source)
    if len(systems) == 2:
        folder = first.parent
        return folder / f"inspect_{systems[0].label}_vs_{systems[1].label}.html"
    if systems[0].kind == "file":
        return first.with_name(f"{first.stem}_inspect.html")
    return first / "inspect.html"
