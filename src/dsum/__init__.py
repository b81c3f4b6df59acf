"""dsum as a library: what a notebook calls, with the CLI's semantics.

    import dsum
    cfg = dsum.load_config("../configs/demo.yaml", {"training.epochs": 1})
    run_dir = dsum.train(cfg)                     # runs/demo (or demo-2, ...), as `dsum train` makes it
    dsum.predict(cfg, run_dir, split="dev")       # {"path", "score", "rouge1", ...}

Each function is its verb: the same run directories, the same `.env` secrets, the same checks.
A problem the user can fix raises `dsum.UserError` with the message the CLI prints (never
SystemExit); a check that finds problems returns them, as `dsum data check --json` prints them.
Relative paths in a config file are relative to its project root (see dsum.config.resolve_paths),
so a notebook in examples/ trains on the same data and writes to the same runs/ as the shell.

The heavy modules (torch, transformers) are imported by the first call that needs them, so
`import dsum` and the `dsum` command stay quick.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsum.config import load_config
from dsum.util.errors import UserError
from dsum.util.verbosity import set_verbosity

if TYPE_CHECKING:
    from dsum.config import Config
    from dsum.data.check import FileReport
    from dsum.report.build import ReportFiles
    from dsum.report.inspect_build import InspectFiles
    from dsum.metric.rouge import Score

__version__ = version("dsum")

__all__ = [
    "UserError", "check_data", "check_submission", "eda", "inspect", "list_runs", "load_config", "mbr", "predict", "score",
    "set_verbosity", "train", "tune", "__version__",
]


def _api(function):
    """Load the `.env` secrets (once) before a call, as the `dsum` command does before any verb."""

    @functools.wraps(function)
    def call(*args, **kwargs):
        from dsum.util.envfile import load_env_file

        load_env_file()
        return function(*args, **kwargs)

    return call


@_api
def train(cfg: Config, resume: bool | str | Path = False, folds: int | None = None, folds_include_dev: bool = False) -> Path:
    """`dsum train`: fine-tune, keep the best checkpoint by the board's score, score dev, write the
    test submission; returns the run directory. `resume`: True continues this config's unfinished
    run, a path names the run to continue (--resume / --resume-dir). `folds`: K fold runs, the
    out-of-fold score and a fold-ensemble submission (--folds, --folds-include-dev); returns their
    parent directory."""
    from dsum.verbs.folds import check_fold_flags

    check_fold_flags(folds, folds_include_dev, resume)  # the CLI's refusals, word for word
    if folds is not None:
        from dsum.verbs.folds import train_folds

        return train_folds(cfg, folds, folds_include_dev)
    from dsum.verbs.train import train as run_training

    return run_training(cfg, resume=Path(resume) if isinstance(resume, str) else resume)


@_api
def predict(
    cfg: Config, checkpoint: str | Path | list, split: str = "dev", out: str | Path | None = None, candidates: int | None = None,
    samples: int | None = None,
) -> dict:
    """`dsum predict`: summaries of a split, written at `out` (default: beside the checkpoint, test_submission.csv
    or dev_predict.csv): test → a checked submission, dev → the dev predictions file (per-row scores; no sample
    submission needed); returns {"path", and on dev "score", "rouge1", "rouge2", "rougeL", "rows"}.
    `checkpoint` is a model folder or a run directory (its checkpoint-best), or a list of them: a
    logit ensemble (--checkpoint repeated). `candidates=K`
    (--candidates K): also the K best beams per row, `samples=S` (--samples S) S drawn summaries per
    row, in one candidates file, its path under "candidates"."""
    from dsum.verbs.predict import predict as run_predict

    # A list of checkpoints is a logit ensemble (--checkpoint repeated).
    checkpoints = [Path(c) for c in checkpoint] if isinstance(checkpoint, (list, tuple)) else Path(checkpoint)
    return run_predict(cfg, checkpoints, split, Path(out) if out is not None else None, candidates, samples)


@_api
def score(pred: str | Path, gold: str | Path, analyser: str = "mecab") -> Score:
    """`dsum score`: the board's ROUGE of a predictions file against a references file (rows matched
    by fname); `.score` is (R1+R2+RL)/3×100, `.per_row` the rows."""
    from dsum.data.files import read_examples, read_predictions, reference_map
    from dsum.metric.rouge import score_texts

    return score_texts(read_predictions(pred), reference_map(read_examples(gold, require_summary=True)), analyser)


@_api
def tune(cfg: Config, workers: int = 1) -> dict[str, Any]:
    """`dsum tune`: run the config's Optuna study (tune.n_trials more trials), write best.yaml,
    trials.csv and the plots; returns {"trials", "best_params", "best_value", "best_yaml", "plots",
    "dir", "dashboard", ...}. UserError when no trial finished."""
    from dsum.verbs.tune import require_best, write_results
    from dsum.verbs.tune import tune as run_tune

    result = write_results(cfg, run_tune(cfg, workers))
    require_best(cfg, result)
    return result


@_api
def eda(cfg: Config, out: str | Path = "reports/eda", workers: int | None = None) -> ReportFiles:
    """`dsum eda`: the data report under `out`; returns its paths (.html, .json, .lengths, .images:
    the PNGs, e.g. to show with IPython.display.Image)."""
    from dsum.report.morphemes import default_workers
    from dsum.report.build import build_report

    return build_report(cfg, Path(out), workers=workers or default_workers())


@_api
def inspect(
    run: str | Path, run_b: str | Path | None = None, dev: str | Path | None = None, out: str | Path | None = None,
    runs_dir: str | Path = "runs", analyser: str = "mecab",
) -> InspectFiles:
    """`dsum inspect`: the offline page of a run's dev predictions (a run, a K-fold parent, or a predictions
    file with its `dev` file), or of two systems on the same rows; returns .html, .json and .data (the
    numbers of inspect.json: .data["systems"], ["buckets"], ["flags"], ["comparison"], ["table"])."""
    from dsum.report.inspect_build import build_inspect

    return build_inspect(run, run_b, dev, out, runs_dir, analyser)


@_api
def check_data(paths: str | Path | Sequence[str | Path]) -> list[FileReport]:
    """`dsum data check`: one report per file (.findings with level error/warning/info, .tokens);
    `[r.to_dict() for r in reports]` is what --json prints."""
    from dsum.data.check import check_files

    paths = [paths] if isinstance(paths, (str, Path)) else paths
    return check_files([Path(p) for p in paths])


@_api
def check_submission(sub: str | Path, test: str | Path, sample: str | Path | None = None) -> list[str]:
    """`dsum submission check`: every problem of the submission (an empty list: well formed)."""
    from dsum.data.submission import check_submission as run_check

    return run_check(Path(sub), Path(test), Path(sample) if sample is not None else None)


@_api
def list_runs(output_dir: str | Path = "runs", sort: str = "score") -> list[dict]:
    """`dsum runs --json`: one dict per run (name, model, lr, batch, epochs, score, best epoch,
    status, ...); `pandas.DataFrame(dsum.list_runs(cfg.general.output_dir))` is the table."""
    from dsum.runs.read import list_runs as read_runs
    from dsum.runs.read import rows_as_dicts

    return rows_as_dicts(read_runs(Path(output_dir), sort))


@_api
def mbr(
    preds: Sequence[str | Path], out: str | Path, gold: str | Path | None = None,
    weights: Sequence[float] | None = None, source_weights: Sequence[float] | None = None, analyser: str = "mecab",
):
    """`dsum ensemble mbr`: per row, the candidate the others agree with most (board ROUGE); writes `out`
    and its `_rows.csv` (with gold also `_record.md`); returns .result (.summaries, .choice, .wins())
    and .gold (.scores, .mbr, .oracle, .bootstrap, .halves) or None."""
    from dsum.verbs.ensemble import run_mbr

    return run_mbr([Path(p) for p in preds], Path(out), Path(gold) if gold is not None else None, weights, source_weights, analyser)
