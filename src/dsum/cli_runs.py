"""`dsum runs` and `dsum runs compare`: the run directories as a team reads them (dsum.runs.read)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from dsum import cli_render as render
from dsum.runs.read import STATUSES

runs_app = typer.Typer()  # help: the docstring of runs_list below

RunsDirOption = typer.Option(Path("runs"), "--dir", help="The runs directory (general.output_dir).")


@runs_app.callback(invoke_without_command=True)
def runs_list(
    ctx: typer.Context,
    runs_dir: Path = RunsDirOption,
    sort: str = typer.Option("score", "--sort", help="score (best first), date (newest first) or name."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """List runs (model, lr, batch, epochs, dev score, best epoch, status); `compare` two.

    `dsum llm summarize` runs are listed too: model api:<llm.model>, no training settings.

    Statuses: {statuses}.

    Example: dsum runs --sort date
    """
    if ctx.invoked_subcommand is not None:
        return
    from dsum.runs.read import list_runs, rows_as_dicts

    rows = list_runs(runs_dir, sort)
    if as_json:
        print(json.dumps(rows_as_dicts(rows), ensure_ascii=False, indent=2))
        return
    render.console().print(render.runs_table(rows, title=f"runs in {runs_dir}"))


runs_list.__doc__ = runs_list.__doc__.format(statuses="; ".join(f"{name}: {meaning}" for name, meaning in STATUSES.items()))


@runs_app.command("compare")
def runs_compare(
    run_a: str = typer.Argument(..., help="A run name under --dir, or a run directory."),
    run_b: str = typer.Argument(..., help="The run to compare it with."),
    runs_dir: Path = RunsDirOption,
    out: Optional[Path] = typer.Option(None, "--out", help="PNG of both learning curves (default: <dir>/compare_A_vs_B.png)."),
    html: bool = typer.Option(False, "--html", help="Also the dsum inspect page of the two runs' dev predictions (<dir>/inspect_A_vs_B.html)."),
) -> None:
    """Config keys that differ, metrics side by side (B − A), and a PNG of both learning curves.

    With both runs' dev_predictions.csv: a paired bootstrap of B − A over the dev rows (seeded,
    1,000 resamples: the difference, its 95% interval, how often B wins) and each run's spread over
    random topic halves of dev (the board splits public/private by topic).

    --html also writes the page of `dsum inspect A B` (row by row, buckets, flags, side by side).

    Example: dsum runs compare demo demo-2
    """
    from dsum.runs.read import compare_runs

    result = compare_runs(run_a, run_b, runs_dir, out)
    render.comparison(result)
    if html:  # issue 26: the inspect page of the same two runs
        from dsum.report.inspect_build import build_inspect

        render.inspected(build_inspect(result.a, result.b, runs_dir=runs_dir))
