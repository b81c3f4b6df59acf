"""The `dsum` command: one thin function per verb; the work happens in the library modules."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from dsum.errors import UserError

app = typer.Typer(
    help="Korean dialogue summarization: data checks, the board's ROUGE, training, submissions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show resolved configs.", no_args_is_help=True)
data_app = typer.Typer(help="Check and clean competition data files.", no_args_is_help=True)
submission_app = typer.Typer(help="Check submission files.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.add_typer(submission_app, name="submission")

console = Console()
ConfigOption = typer.Option(..., "--config", "-c", help="YAML recipe, e.g. configs/demo.yaml.")
SetOption = typer.Option([], "--set", help="Override a key: --set training.learning_rate=3e-5 (repeatable).")


def _load(config: Path, overrides: list[str]):
    from dsum.config import load_config

    return load_config(config, overrides)


@config_app.command("show")
def config_show(config: Path = ConfigOption, set_: list[str] = SetOption) -> None:
    """Print the resolved config (file + overrides + defaults).

    Example: dsum config show -c configs/demo.yaml --set training.epochs=3
    """
    sys.stdout.write(_load(config, set_).to_yaml())


@data_app.command("check")
def data_check(
    paths: list[Path] = typer.Argument(..., help="CSV or JSONL files (train/dev/test/sample submission)."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
) -> None:
    """Check competition files: columns, ids, empty texts, speaker tags, #...# tokens, encoding.

    Errors exit 2; warnings alone exit 0.

    Example: dsum data check data/sample/train.csv data/sample/test.csv
    """
    from dsum.data import check_files

    reports = check_files(paths)
    if as_json:
        print(json.dumps([r.to_dict() for r in reports], ensure_ascii=False, indent=2))
    else:
        _print_reports(reports)
    if any(f.level == "error" for r in reports for f in r.findings):
        raise typer.Exit(2)


def _print_reports(reports) -> None:
    for report in reports:
        table = Table(title=f"{report.path} ({report.kind}): {report.rows} rows; columns {', '.join(report.columns)}")
        for column in ("level", "check", "count", "message"):
            table.add_column(column)
        styles = {"error": "red", "warning": "yellow", "info": "cyan"}
        for f in report.findings:
            table.add_row(f"[{styles.get(f.level, '')}]{f.level}[/]", f.check, str(f.count), f.message)
        if not report.findings:
            table.add_row("[green]ok[/]", "-", "-", "no problem found")
        console.print(table)
        if report.tokens:
            tokens = Table(title="#...# tokens")
            tokens.add_column("token")
            tokens.add_column("count", justify="right")
            for token, count in report.tokens.most_common():
                tokens.add_row(token, str(count))
            console.print(tokens)


@data_app.command("preprocess")
def data_preprocess(
    src: Path = typer.Argument(..., help="Input CSV/JSONL."),
    dst: Path = typer.Argument(..., help="Output path (same format)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Recipe whose data.rules to apply."),
    set_: list[str] = SetOption,
) -> None:
    """Write a cleaned copy (ㅋ+/ㅎ+ → 웃음, ㅠ+/ㅜ+ → 슬픔, artefacts, spaces) and count rows per rule.

    #...# tokens are never changed.

    Example: dsum data preprocess data/sample/train.csv /tmp/train.clean.csv
    """
    from dsum.config import load_config
    from dsum.text import normalizer_from_config, preprocess_file

    cfg = load_config(config, set_)
    counts = preprocess_file(src, dst, normalizer_from_config(cfg.data, force=True))
    table = Table(title=f"{src} → {dst}")
    table.add_column("rule")
    table.add_column("rows changed", justify="right")
    for rule, count in counts.items():
        table.add_row(rule, str(count))
    console.print(table)


@app.command("score")
def score(
    pred: Path = typer.Option(..., "--pred", help="Predictions: a CSV/JSONL with fname and summary columns."),
    gold: Path = typer.Option(..., "--gold", help="References: `summary` or `summary1..N` columns."),
    tokenizer: str = typer.Option("mecab", "--tokenizer", help="mecab (default, fast), kiwi or whitespace."),
    per_row: Optional[Path] = typer.Option(None, "--per-row", help="Write per-row scores to this CSV."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: score, rouge1, rouge2, rougeL, rows."),
) -> None:
    """Score predictions with the leaderboard's ROUGE: morphemes, mean over references, (R1+R2+RL)/3×100.

    Example: dsum score --pred runs/demo/dev_submission.csv --gold data/sample/dev.csv
    """
    from dsum.atomic import atomic_write_text
    from dsum.data import read_examples, read_predictions, reference_map
    from dsum.metric import score_texts

    result = score_texts(read_predictions(pred), reference_map(read_examples(gold, require_summary=True)), tokenizer)
    if per_row:
        import pandas as pd

        rows = [dict(fname=r.fname, score=r.score, rouge1=r.rouge1, rouge2=r.rouge2, rougeL=r.rougeL) for r in result.per_row]
        atomic_write_text(per_row, pd.DataFrame(rows).to_csv(index=False))
    if as_json:
        print(json.dumps(result.to_dict()))
        return
    print(
        f"score {result.score:.2f}  (ROUGE-1 {result.rouge1:.4f}  ROUGE-2 {result.rouge2:.4f}  "
        f"ROUGE-L {result.rougeL:.4f}; {result.rows} rows, {tokenizer} tokens)"
    )


@app.command("train")
def train(
    config: Path = ConfigOption,
    set_: list[str] = SetOption,
    resume: bool = typer.Option(False, "--resume", help="Continue the latest run of this config from its last checkpoint."),
) -> None:
    """Fine-tune a seq2seq model; keep the best checkpoint by the board's score; write a test submission.

    Several GPUs: torchrun --nproc_per_node 2 -m dsum train -c configs/kobart.yaml

    Example: dsum train -c configs/demo.yaml
    """
    from dsum.train import train as run_training

    run_dir = run_training(_load(config, set_), resume=resume)
    print(f"run directory: {run_dir}")


@app.command("predict")
def predict(
    config: Path = ConfigOption,
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A saved model folder, e.g. runs/<name>/checkpoint-best."),
    split: str = typer.Option("test", "--split", help="test or dev."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output CSV (default: beside the checkpoint)."),
    set_: list[str] = SetOption,
) -> None:
    """Generate summaries for a split and write a checked submission; on dev also print the score.

    Example: dsum predict -c configs/demo.yaml --checkpoint runs/<name>/checkpoint-best --split test
    """
    from dsum.predict import predict as run_predict

    result = run_predict(_load(config, set_), checkpoint, split, out)
    if "score" in result:
        print(f"dev board score {result['score']:.2f} (R1 {result['rouge1']:.4f} R2 {result['rouge2']:.4f} RL {result['rougeL']:.4f})")
    print(f"submission: {result['path']} (passed the submission check)")


@submission_app.command("check")
def submission_check(
    sub: Path = typer.Argument(..., help="The submission CSV."),
    test: Path = typer.Option(..., "--test", help="The test file whose fnames the submission must match."),
    sample: Optional[Path] = typer.Option(None, "--sample", help="sample_submission.csv whose layout to match."),
) -> None:
    """List every problem of a submission (ids, empty summaries, leftover tokens, encoding, layout); exit 2 if any.

    Example: dsum submission check runs/<name>/submission.csv --test data/sample/test.csv --sample data/sample/sample_submission.csv
    """
    from dsum.submission import check_submission

    problems = check_submission(sub, test, sample)
    for problem in problems:
        console.print(f"[red]✗[/] {problem}")
    if problems:
        raise typer.Exit(2)
    console.print(f"[green]✓[/] {sub} is a well-formed submission")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    from dotenv import load_dotenv

    load_dotenv(override=False)  # secrets (UPSTAGE_API_KEY, WANDB_API_KEY) from .env, never from configs
    try:
        app()  # standalone mode: click reports usage errors itself (exit 2) and exits
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
