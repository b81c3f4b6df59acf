"""What the `dsum` command shows: the library returns results, these functions turn them into rich
tables and lines. Results go to stdout; the LLM request report, like progress, to stderr and not
under `dsum -q`.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from dsum.llm.client import RunStats
    from dsum.runs.read import Comparison, RunRow
    from dsum.verbs.augment import AugmentResult

def console() -> Console:
    """stdout as it is now: its width (COLUMNS) and stream are read at each command, not once at import."""
    return Console()


def data_reports(reports) -> None:
    """`dsum data check`: one table of findings per file, and its #...# tokens."""
    styles = {"error": "red", "warning": "yellow", "info": "cyan"}
    for report in reports:
        table = Table(title=f"{report.path} ({report.kind}): {report.rows} rows; columns {', '.join(report.columns)}")
        for column in ("level", "check", "count", "message"):
            table.add_column(column)
        for f in report.findings:
            table.add_row(f"[{styles.get(f.level, '')}]{f.level}[/]", f.check, str(f.count), f.message)
        if not report.findings:
            table.add_row("[green]ok[/]", "-", "-", "no problem found")
        console().print(table)
        if report.tokens:
            tokens = Table(title="#...# tokens")
            tokens.add_column("token")
            tokens.add_column("count", justify="right")
            for token, count in report.tokens.most_common():
                tokens.add_row(token, str(count))
            console().print(tokens)


def rule_counts(src: Path, dst: Path, counts: dict[str, int]) -> None:
    """`dsum data preprocess`: rows changed per clean-up rule."""
    table = Table(title=f"{src} → {dst}")
    table.add_column("rule")
    table.add_column("rows changed", justify="right")
    for rule, count in counts.items():
        table.add_row(rule, str(count))
    console().print(table)


def dev_score(score: dict | Any, rows: bool = False) -> str:
    """`dev board score 41.23 (R1 ... R2 ... RL ...)` of a dict or a Score (`rows`: with the row count)."""
    get = score.get if isinstance(score, dict) else lambda key: getattr(score, key)
    tail = f"; {get('rows')} rows" if rows else ""
    return f"dev board score {get('score'):.2f} (R1 {get('rouge1'):.4f} R2 {get('rouge2'):.4f} RL {get('rougeL'):.4f}{tail})"


def train_result(run_dir: Path) -> None:
    """`dsum train`'s result lines. The run logs its dev score and submission as it goes; under -q (no log lines)
    they are printed here, from metrics.json."""
    from dsum.util.verbosity import is_quiet

    metrics_file = Path(run_dir) / "metrics.json"
    if is_quiet() and metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        print(dev_score(metrics["dev"]))
        if metrics.get("submission"):
            print(f"submission: {metrics['submission']}")
    print(f"run directory: {run_dir}")


def folds(parent: Path) -> None:
    """`dsum train --folds K`: each fold's held-out score and the out-of-fold score, from folds.json."""
    oof = json.loads((Path(parent) / "folds.json").read_text(encoding="utf-8"))["oof"]
    table = Table(title="K-fold dev scores (each fold's held-out rows)")
    for column in ("fold", "rows", "score", "R1", "R2", "RL"):
        table.add_column(column, justify="right")
    for f in [*oof["folds"], {**oof, "fold": "OOF"}]:
        table.add_row(str(f["fold"]), str(f["rows"]), f"{f['score']:.2f}", f"{f['rouge1']:.4f}", f"{f['rouge2']:.4f}", f"{f['rougeL']:.4f}")
    console().print(table)


def cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def tune_trials(study_name: str, trials: list[dict]) -> None:
    """`dsum tune`: one row per trial, one column per parameter and value. At 80 columns the numbers stay whole:
    a light frame, headers stacked at their underscores (learning_rate → learning / rate), only the note folds."""
    table = Table(title=f"study {study_name}: {len(trials)} trials", box=box.MINIMAL_HEAVY_HEAD, show_edge=False,
                  pad_edge=False, collapse_padding=True)
    columns = list(dict.fromkeys(key for row in trials for key in row))
    for column in columns:
        name = "#" if column == "number" else column.split(".")[-1]  # training.learning_rate → learning_rate
        if column == "note":
            table.add_column(name, overflow="fold", min_width=12)
        else:
            table.add_column(name.replace("_", "\n"), no_wrap=True, justify="left" if column == "state" else "right")
    for row in trials:
        table.add_row(*[cell(row.get(column)) for column in columns])
    console().print(table)


STATUS_STYLES = {"finished": "green", "running": "cyan", "running?": "cyan", "failed": "red", "crashed": "red",
                 "diverged": "red", "interrupted": "yellow", "save_failed": "red", "out_of_memory": "red"}


def short_date(date: str, today: datetime | None = None) -> str:
    """'2026-11-29 14:05' → '11-29 14:05' this year, '2025-11-29' another year: 11 characters at most."""
    year = (today or datetime.now()).strftime("%Y")
    return date[5:] if date.startswith(f"{year}-") else date[:10]


def runs_table(rows: list[RunRow], title: str) -> Table:
    """The `dsum runs` table. At 80 columns, date, status and the numbers stay whole; the name and
    the model fold onto more lines instead."""
    # A light frame: the nine columns' borders and padding would otherwise take a third of 80 columns.
    table = Table(title=title, box=box.MINIMAL_HEAVY_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("name", overflow="fold")
    table.add_column("date", no_wrap=True, min_width=11)
    table.add_column("model", overflow="fold")
    for column in ("lr", "bs", "ep", "score", "best ep"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True, min_width=8)
    for r in rows:
        lr, batch, epochs, best = ("-" if v is None else f"{v:g}" for v in (r.learning_rate, r.batch_size, r.epochs, r.best_epoch))
        score = "-" if r.score is None else f"{r.score:.2f}"
        status = f"[{STATUS_STYLES.get(r.status, '')}]{r.status}[/]"
        table.add_row(r.name, short_date(r.date), r.model, lr, batch, epochs, score, best, status)
    return table


def comparison(result: Comparison) -> None:
    """`dsum runs compare`: the config keys that differ, the metrics (B − A), the noise, the plot."""
    from dsum.runs.read import format_metric, format_value

    config = Table(title="config: keys that differ")
    for column in ("key", result.a.name, result.b.name):
        config.add_column(column)
    for key, a, b in result.config:
        config.add_row(key, format_value(a), format_value(b))
    if not result.config:
        config.add_row("-", "same config", "same config")
    metrics = Table(title="dev metrics")
    for column in ("metric", result.a.name, result.b.name, "B − A"):
        metrics.add_column(column, justify="left" if column == "metric" else "right")
    for name, a, b, diff in result.metrics:
        metrics.add_row(name, format_metric(name, a), format_metric(name, b), format_metric(name, diff, signed=True))
    console().print(config)
    console().print(metrics)
    if result.bootstrap is not None:
        print(f"paired bootstrap over dev rows: {result.bootstrap.line(result.a.name, result.b.name)}")
    for name, halves in (result.halves or {}).items():
        print(f"{name} {halves.line()}")
    print(f"learning curves: {result.plot}")


def mbr(files, seconds: float) -> None:
    """`dsum ensemble mbr`: rows won per source (with --gold: scores, MBR, oracle, bootstrap), the files."""
    result, report = files.result, files.gold
    table = Table(title=f"MBR over {len(result.labels)} candidates per row, {len(result.fnames)} rows")
    table.add_column("source", overflow="fold")
    if report is not None:
        table.add_column("score", justify="right")
    table.add_column("rows won", justify="right")
    for label, won in result.wins().items():
        table.add_row(label, *([f"{report.scores[label]:.2f}"] if report is not None else []), str(won))
    if report is not None:
        table.add_section()
        table.add_row("[bold]MBR[/]", f"[bold]{report.mbr:.2f}[/]", str(len(result.fnames)))
        table.add_row("oracle (best per row)", f"{report.oracle:.2f}", "-")
    console().print(table)
    if report is not None:
        print(f"paired bootstrap over dev rows: {report.bootstrap.line(report.best_source, 'MBR')}")
        if report.halves:
            print(f"MBR {report.halves.line()}")
    record = f"; record: {files.record}" if files.record else ""
    print(f"chosen summaries: {files.out} (per row: {files.rows}{record}) in {seconds:.1f} s")


def doctor(config: Path, checks) -> None:
    """`dsum doctor`: ✓ ok, ! warning, ✗ problem, one row per check."""
    marks = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}
    table = Table(title=f"dsum doctor: {config}")
    for column in ("", "check", "detail"):
        table.add_column(column)
    for check in checks:
        table.add_row(marks[check.level], check.name, escape(check.detail))
    console().print(table)


def augment(result: AugmentResult) -> None:
    """`dsum augment`: rows written, rows rejected and why, the API's requests."""
    table = Table(title=f"augment: {result.method}")
    table.add_column("")
    table.add_column("rows", justify="right")
    table.add_row("source rows", str(result.source_rows))
    table.add_row("[green]written[/]", str(result.written))
    # Every reason a row is not written, 0 included (the API's only for API methods); then any other counted.
    shown = ["rejected: #...# tokens changed", "unchanged", "duplicate"]
    if result.api:
        shown = ["rejected: turns changed", "failed (API)", *shown]
    for reason in [*shown, *sorted(set(result.counts) - set(shown))]:
        table.add_row(reason, str(result.counts.get(reason, 0)))
    if result.api:
        table.add_row("API requests sent", str(result.api["requests_sent"]))
        table.add_row("API answers from the cache", str(result.api["from_cache"]))
        table.add_row("API retries", str(sum(result.api["retries"].values())))
        table.add_row("API tokens (prompt + completion)", str(result.api["prompt_tokens"] + result.api["completion_tokens"]))
    console().print(table)
    print(f"augmented rows: {result.path}")


def llm_report(stats: RunStats, split: str) -> None:
    """`dsum llm summarize`'s closing report on stderr (hidden by -q): rows, requests, retries, tokens."""
    import logging

    table = Table(title=f"LLM report ({split})")
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_row("answered by the API", str(stats.answered))
    table.add_row("from the cache", str(stats.from_cache))
    table.add_row("[red]failed[/]" if stats.failed else "failed", str(stats.failed))
    table.add_row("requests sent", str(stats.requests_sent))
    for reason, count in sorted(stats.retries.items()):
        table.add_row(f"  retries after {reason}", str(count))
    table.add_row("prompt tokens", str(stats.prompt_tokens))
    table.add_row("completion tokens", str(stats.completion_tokens))
    table.add_row("seconds", f"{stats.elapsed_s:.1f}")
    if logging.getLogger("dsum").isEnabledFor(logging.INFO):  # -q hides it
        Console(stderr=True, width=100).print(table)


# --- dsum inspect (issue 26) ----------------------------------------------------------------
def inspected(files) -> None:
    """`dsum inspect`: each system's score and flagged rows, B − A when two, the files."""
    data = files.data
    columns = data["table"]["columns"]
    for k, system in enumerate(data["systems"]):
        i = system["interval"]
        flags = columns.index(f"flags{k}")
        flagged = sum(1 for row in data["table"]["rows"] if row[flags])
        print(f"{system['label']}: board score {system['score']:.2f} (95% interval {i['low']:.2f} .. {i['high']:.2f}); "
              f"{flagged} of {data['rows_total']} rows flagged")
    if data["comparison"] is not None:
        c = data["comparison"]
        print(f"B − A {c['bootstrap']['diff']:+.2f} (95% interval {c['bootstrap']['low']:+.2f} .. {c['bootstrap']['high']:+.2f}); "
              f"B wins {c['wins']} rows, ties {c['ties']}, loses {c['losses']}")
    print(f"page: {files.html}")
    print(f"numbers: {files.json}")

