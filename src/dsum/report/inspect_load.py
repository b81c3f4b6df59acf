"""What `dsum inspect` reads: one system's dev predictions with their dialogues, references and topics.

A source is one of

* a run directory (or its name under runs/): dev_predictions.csv, the dialogues and topics of the
  config's data.dev, generation.max_new_tokens and the run's tokenizer (to tell a summary cut at
  max_new_tokens);
* a K-fold parent (runs/<name>-folds/): oof_predictions.csv, the dialogues and topics of its
  data/fold-k/dev.csv;
* a predictions file (a submission `fname,summary` or a dev predictions file) with the dev file
  that holds its dialogues and references (`--dev`); a dev predictions file written by dsum holds
  dialogues and references itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from dsum.data.files import Example, read_examples, read_predictions, read_table, summary_columns
from dsum.util.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class System:
    """One system's predictions over dev rows (in dev order) and what the page needs beside them."""

    label: str
    source: str  # the path it was read from
    kind: str  # run | folds | file
    examples: list[Example]  # the dev rows predicted: dialogue, references, topic
    predictions: dict[str, str]  # fname -> prediction as written (special tokens and all)
    max_new_tokens: int | None = None
    token_counts: dict[str, int] = field(default_factory=dict)  # fname -> prediction tokens (run tokenizer)

    @property
    def fnames(self) -> list[str]:
        return [ex.fname for ex in self.examples]


def load_system(ref: str | Path, dev: str | Path | None = None, runs_dir: Path = Path("runs")) -> System:
    """The System `ref` names: a run (directory or name), a K-fold parent or a predictions file."""
    path = Path(ref)
    if path.is_file():
        return _from_file(path, Path(dev) if dev else None)
    if path.is_dir() and (path / "oof_predictions.csv").is_file():
        return _from_folds(path, Path(dev) if dev else None)
    from dsum.runs.read import find_run

    run = find_run(ref, runs_dir)
    if (run / "oof_predictions.csv").is_file():
        return _from_folds(run, Path(dev) if dev else None)
    return _from_run(run, Path(dev) if dev else None)


def _from_run(run: Path, dev: Path | None) -> System:
    predictions_path = run / "dev_predictions.csv"
    if not predictions_path.is_file():
        raise UserError(f"{run} has no dev_predictions.csv (the run did not reach its dev scoring): "
                        "inspect a finished run, or a predictions file with --dev")
    cfg = _run_config(run)
    predictions = read_predictions(predictions_path)
    if dev is None and cfg is not None and Path(cfg.data.dev).is_file():
        try:
            examples = _examples(predictions_path, predictions, Path(cfg.data.dev))
        except UserError as exc:  # the config's dev file changed since: the run's own copy of the rows
            log.warning("%s: %s; reading dialogues and references from dev_predictions.csv (no topics)", run, exc)
            examples = _examples(predictions_path, predictions, None)
    else:
        examples = _examples(predictions_path, predictions, dev)
    system = System(run.name, str(run), "run", examples, predictions)
    if cfg is not None:
        system.max_new_tokens = cfg.generation.max_new_tokens
        system.token_counts = _token_counts(run, predictions)
    return system


def _from_folds(parent: Path, dev: Path | None) -> System:
    predictions_path = parent / "oof_predictions.csv"
    predictions = read_predictions(predictions_path)
    if dev is None:
        # Each fold's held-out rows: dialogues, references and topics of the pool.
        dev_rows = {ex.fname: ex for folder in sorted((parent / "data").glob("fold-*"))
                    for ex in read_examples(folder / "dev.csv", require_summary=True)}
        missing = [f for f in predictions if f not in dev_rows]
        if missing:
            raise UserError(f"{parent}: {len(missing)} out-of-fold rows (e.g. {missing[0]}) are in no data/fold-k/dev.csv; "
                            "give the pool's file with --dev")
        examples = [dev_rows[f] for f in predictions]
    else:
        examples = _examples(predictions_path, predictions, dev)
    return System(parent.name, str(parent), "folds", examples, predictions)


def _from_file(path: Path, dev: Path | None) -> System:
    predictions = read_predictions(path)
    examples = _examples(path, predictions, dev)
    return System(path.stem, str(path), "file", examples, predictions)


def _examples(path: Path, predictions: dict[str, str], dev: Path | None) -> list[Example]:
    """The dev rows of `predictions`, in prediction order: from the dev file, else from the predictions
    file itself when it holds dialogues and references (a dev predictions file)."""
    if dev is not None:
        by_fname = {ex.fname: ex for ex in read_examples(dev, require_summary=True)}
        missing = [f for f in predictions if f not in by_fname]
        if missing:
            raise UserError(f"{path}: {len(missing)} predicted rows (e.g. {missing[0]}) are not in {dev}: "
                            "give the dev file these predictions were made on (--dev)")
        return [by_fname[f] for f in predictions]
    table = read_table(path)
    references = [c for c in table.columns if c.startswith("reference")] or summary_columns(table.columns)
    if "dialogue" not in table.columns or not references or "prediction" not in table.columns:
        raise UserError(f"{path} holds no dialogues and references: give the dev file they belong to with --dev data/dev.csv")
    return [Example(row["fname"], row["dialogue"], tuple(row[c] for c in references if row[c].strip()), None)
            for row in table.to_dict("records")]


def _run_config(run: Path):
    """The run's config (None when it cannot be read: an older run, a moved project)."""
    from dsum.config import load_config

    try:
        return load_config(run / "config.yaml")
    except (UserError, OSError, ValueError) as exc:
        log.warning("%s: config.yaml unreadable (%s): no topics, no max_new_tokens check", run, exc)
        return None


def _token_counts(run: Path, predictions: dict[str, str]) -> dict[str, int]:
    """Tokens of each prediction by the run's own tokenizer (tokenizers' fast reader, no model load);
    {} when the run kept no tokenizer.json."""
    files = sorted(run.glob("checkpoint-*/tokenizer.json"))
    if not files:
        return {}
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(files[0]))
    fnames = list(predictions)
    encoded = tokenizer.encode_batch([predictions[f] for f in fnames], add_special_tokens=False)
    return {f: len(e.ids) for f, e in zip(fnames, encoded)}


def same_rows(a: System, b: System) -> None:
    """Two systems compared row by row must hold the same dev rows."""
    only_a = set(a.fnames) - set(b.fnames)
    only_b = set(b.fnames) - set(a.fnames)
    if only_a or only_b:
        raise UserError(f"{a.label} and {b.label} do not hold the same dev rows ({len(only_a)} only in {a.label}, "
                        f"{len(only_b)} only in {b.label}): compare systems that predicted the same dev file")
