"""`dsum config`, `dsum data` and `dsum submission`: the files a team checks before and after a run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from dsum import cli_render as render
from dsum.cli_options import ConfigOption, SetOption, load

config_app = typer.Typer(help="Show resolved configs and the config schema.", no_args_is_help=True)
data_app = typer.Typer(help="Check and clean competition data files.", no_args_is_help=True)
submission_app = typer.Typer(help="Check submission files.", no_args_is_help=True)


@config_app.command("show")
def config_show(config: Path = ConfigOption, set_: list[str] = SetOption) -> None:
    """Print the resolved config (file + overrides + defaults).

    Example: dsum config show -c configs/demo.yaml --set training.epochs=3
    """
    sys.stdout.write(load(config, set_).to_yaml())


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON schema of config files, every key with its description, for an editor's
    completion and checks in the YAML (see README: "Configs").

    Example: dsum config schema > dsum.schema.json
    """
    from dsum.config import json_schema

    print(json.dumps(json_schema(), ensure_ascii=False, indent=2))


@data_app.command("check")
def data_check(
    paths: list[Path] = typer.Argument(..., help="CSV or JSONL files (train/dev/test/sample submission)."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
) -> None:
    """Check competition files: columns, ids, empty texts, speaker tags, #...# tokens, encoding.

    Errors exit 2; warnings alone exit 0.

    Example: dsum data check data/sample/train.csv data/sample/test.csv
    """
    from dsum.data.check import check_files

    reports = check_files(paths)
    if as_json:
        print(json.dumps([r.to_dict() for r in reports], ensure_ascii=False, indent=2))
    else:
        render.data_reports(reports)
    if any(f.level == "error" for r in reports for f in r.findings):
        raise typer.Exit(2)


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
    from dsum.data.files import preprocess_file
    from dsum.data.text import normalizer_from_config

    cfg = load_config(config, set_)
    render.rule_counts(src, dst, preprocess_file(src, dst, normalizer_from_config(cfg.data, force=True)))


@submission_app.command("check")
def submission_check(
    sub: Path = typer.Argument(..., help="The submission CSV."),
    test: Path = typer.Option(..., "--test", help="The test file whose fnames the submission must match."),
    sample: Optional[Path] = typer.Option(None, "--sample", help="sample_submission.csv whose layout to match."),
) -> None:
    """List every problem of a submission (ids, empty summaries, leftover tokens, encoding, layout); exit 2 if any.

    Example: dsum submission check runs/<name>/submission.csv --test data/sample/test.csv --sample data/sample/sample_submission.csv
    """
    from dsum.data.submission import check_submission

    problems = check_submission(sub, test, sample)
    for problem in problems:
        render.console().print(f"[red]✗[/] {problem}")
    if problems:
        raise typer.Exit(2)
    render.console().print(f"[green]✓[/] {sub} is a well-formed submission")
