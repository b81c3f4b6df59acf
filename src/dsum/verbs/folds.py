"""K-fold training: `dsum train -c CONFIG --folds K [--folds-include-dev]`.

    train_folds(cfg, k) = split the pool by topic → K ordinary runs → out-of-fold score → ensemble submission

The pool is the rows of data.train (plus data.dev with include_dev). Folds are stratified by topic
with scikit-learn's StratifiedKFold, shuffled with general.seed, so the same config gives the same
folds. A topic with fewer rows than K cannot sit in every fold: such topics (and rows without a
topic) share one stratum, "other"; when "other" itself has fewer than K rows it joins the largest
stratum. Each fold's held-out part is that fold run's dev set: its model selection, early stopping
and dev_predictions.csv (the out-of-fold predictions) all come from it.

Layout, under <output_dir>/<run name>-folds/ (the parent; a fixed name so a rerun finds it):

    folds.json                the split (every fold's fnames), the config, each fold's score, the OOF score
    data/fold-k/train.csv     the fold's training rows (the pool's columns)
    data/fold-k/dev.csv       its held-out rows
    fold-k/                   an ordinary run directory (dsum runs, dsum predict work on it)
    oof_predictions.csv       fname, fold, prediction, reference(s), per-row scores
    submission.csv            the test submission of the fold ensemble (ensemble.method), checked

A rerun with the same config trains only the folds that did not finish: a finished fold is skipped,
an unfinished one with a checkpoint is resumed, one without a checkpoint starts again. A rerun whose
split or config differs from the one recorded in folds.json is refused (pick another run name).
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from dsum.util.atomic import atomic_write_text, write_json
from dsum.config import Config
from dsum.data.files import read_examples, read_predictions, read_table, reference_map, topic_column
from dsum.util.errors import UserError
from dsum.metric.rouge import score_texts

log = logging.getLogger(__name__)

OTHER = "other"


# ---------------------------------------------------------------------------------------------
# The split


def strata(topics: Sequence[str | None], k: int) -> list[str]:
    """One stratum per row: its topic when at least k rows share it, else "other" (see the module docstring)."""
    counts = Counter(topics)
    labels = [t if t is not None and counts[t] >= k else OTHER for t in topics]
    sizes = Counter(labels)
    if 0 < sizes.get(OTHER, 0) < k and len(sizes) > 1:
        largest = max((s for s in sizes if s != OTHER), key=lambda s: (sizes[s], s))
        labels = [largest if s == OTHER else s for s in labels]
    return labels


def check_fold_flags(k: int | None, include_dev: bool = False, resume: bool | str | Path = False) -> None:
    """train's fold flags (--folds K, --folds-include-dev, --resume), refused before anything is read or imported."""
    if k is None:
        if include_dev:
            raise UserError("--folds-include-dev needs --folds K, e.g. dsum train -c CONFIG --folds 5 --folds-include-dev")
        return
    if k < 2:
        raise UserError(f"--folds {k}: need at least 2 folds; use dsum train without --folds for one run")
    if resume:
        raise UserError("--resume does not go with --folds: rerun the same --folds command, it trains only the folds that did not finish")


def assign_folds(topics: Sequence[str | None], k: int, seed: int) -> list[int]:
    """The fold (0..k-1) of each row: stratified by topic, shuffled with `seed`, deterministic."""
    from sklearn.model_selection import StratifiedKFold

    check_fold_flags(k)
    if len(topics) < k:
        raise UserError(f"--folds {k}: only {len(topics)} rows to split; use fewer folds or more data")
    labels = strata(topics, k)
    fold_of = [0] * len(topics)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        for i in held_out:
            fold_of[i] = fold
    return fold_of


def read_pool(cfg: Config, include_dev: bool) -> pd.DataFrame:
    """The rows that are folded (every column of the files), after read_examples has validated them."""
    paths = [*cfg.data.train, *([cfg.data.dev] if include_dev else [])]
    for path in paths:
        read_examples(path, require_summary=True)  # the same checks and messages as dsum train
    pool = pd.concat([read_table(p) for p in paths], ignore_index=True).fillna("")
    duplicated = pool["fname"][pool["fname"].duplicated()].tolist()
    if duplicated:
        raise UserError(f"fnames appear in more than one file of the pool: {', '.join(duplicated[:5])}; make them unique")
    return pool


def parent_dir(cfg: Config) -> Path:
    from dsum.runs.directory import default_run_name

    return cfg.general.output_dir / f"{cfg.general.run_name or default_run_name(cfg)}-folds"


def plan_folds(cfg: Config, k: int, include_dev: bool) -> tuple[Path, dict, pd.DataFrame]:
    """(parent, plan, pool): the split, written once; a rerun must find the same one in folds.json."""
    pool = read_pool(cfg, include_dev)
    topic_col = topic_column(pool.columns)
    topics = [t or None for t in pool[topic_col]] if topic_col else [None] * len(pool)
    fold_of = assign_folds(topics, k, cfg.general.seed)
    parent = parent_dir(cfg)
    plan = {
        "k": k,
        "include_dev": include_dev,
        "seed": cfg.general.seed,
        "folds": [[f for f, g in zip(pool["fname"], fold_of) if g == fold] for fold in range(k)],
        # What the fold runs depend on: how they are combined (ensemble) or tracked may change on a rerun.
        "config": cfg.model_dump(mode="json", exclude={"ensemble", "tracking"}),
    }
    old = read_plan(parent)
    if old:
        from dsum.config.diff import MISSING, config_diff

        changed = [key for key in ("k", "include_dev", "seed", "folds") if old.get(key) != plan[key]]
        # Keys one side lacks (a newer dsum added them) and ensemble/tracking settings do not change the folds.
        changed += [
            key for key, a, b in config_diff(old.get("config", {}), plan["config"])
            if a is not MISSING and b is not MISSING and key.split(".")[0] not in ("ensemble", "tracking")
        ]
        if changed:
            raise UserError(
                f"{parent} holds folds of another split or config (differs in: {', '.join(changed[:6])}); "
                "rerun with the same settings, or set general.run_name for a new fold set"
            )
    else:
        parent.mkdir(parents=True, exist_ok=True)
        write_json(parent / "folds.json", plan)
    for fold in range(k):
        folder = parent / "data" / f"fold-{fold + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        held = pool["fname"].isin(plan["folds"][fold])
        for name, rows in (("train.csv", pool[~held]), ("dev.csv", pool[held])):
            if not (folder / name).is_file():
                atomic_write_text(folder / name, rows.to_csv(index=False))
    return parent, plan, pool


def read_plan(parent: Path) -> dict:
    from dsum.runs.read import read_json

    return read_json(parent / "folds.json")


# ---------------------------------------------------------------------------------------------
# Training the folds


def fold_config(cfg: Config, parent: Path, fold: int) -> Config:
    """The fold's config: its train/dev files, its run directory <parent>/fold-k; tracked in one group per fold set."""
    data = parent / "data" / f"fold-{fold}"
    return cfg.model_copy(
        update={
            "general": cfg.general.model_copy(update={"output_dir": parent, "run_name": f"fold-{fold}"}),
            "data": cfg.data.model_copy(update={"train": [data / "train.csv"], "dev": data / "dev.csv"}),
            "tracking": cfg.tracking.model_copy(update={"group": cfg.tracking.group or parent.name}),
        }
    )


def train_fold(cfg: Config, parent: Path, fold: int) -> tuple[Path, str]:
    """(run directory, what happened: skipped | resumed | trained) of fold `fold` (1-based)."""
    from dsum.runs.directory import checkpoints
    from dsum.runs.read import run_status
    from dsum.verbs.train import train

    run_dir = parent / f"fold-{fold}"
    fcfg = fold_config(cfg, parent, fold)
    if run_dir.is_dir():
        status = run_status(run_dir)
        if status == "finished":
            return run_dir, "skipped"
        if status in ("running", "running?"):
            raise UserError(f"{run_dir} is still running (status.json); wait for it or stop it, then rerun")
        if checkpoints(run_dir) and (run_dir / "config.yaml").is_file():
            return train(fcfg, resume=run_dir), "resumed"
        shutil.rmtree(run_dir)  # stopped before its first checkpoint: nothing to continue from
    return train(fcfg), "trained"


def fold_scores(parent: Path, k: int) -> list[dict]:
    from dsum.runs.read import read_metrics

    rows = []
    for fold in range(1, k + 1):
        dev = read_metrics(parent / f"fold-{fold}").get("dev", {})
        rows.append({"fold": fold, "rows": dev.get("rows"), "score": dev.get("score"),
                     "rouge1": dev.get("rouge1"), "rouge2": dev.get("rouge2"), "rougeL": dev.get("rougeL")})
    return rows


def out_of_fold(cfg: Config, parent: Path, k: int, pool: pd.DataFrame) -> dict:
    """The board score over every held-out row, each predicted by the fold model that never saw it."""
    frames = []
    for fold in range(1, k + 1):
        frame = read_table(parent / f"fold-{fold}" / "dev_predictions.csv")
        frames.append(frame.assign(fold=fold))
    oof = pd.concat(frames, ignore_index=True)
    examples = [ex for fold in range(1, k + 1) for ex in read_examples(parent / "data" / f"fold-{fold}" / "dev.csv", require_summary=True)]
    score = score_texts(dict(zip(oof["fname"], oof["prediction"])), reference_map(examples), analyser=cfg.metric.tokenizer)
    per_row = {row.fname: row.score for row in score.per_row}
    oof["score"] = oof["fname"].map(per_row)
    order = {f: i for i, f in enumerate(pool["fname"])}
    oof = oof.sort_values("fname", key=lambda s: s.map(order)).drop(columns=["dialogue"], errors="ignore")
    atomic_write_text(parent / "oof_predictions.csv", oof.to_csv(index=False))
    per_fold = fold_scores(parent, k)
    values = np.array([f["score"] for f in per_fold], dtype=float)
    return {
        **score.to_dict(),
        "folds": per_fold,
        # Population std (numpy's default, as sklearn's cross_val_score reports): the spread of these K folds.
        "fold_std": float(values.std()),
        "fold_min": float(values.min()),
        "fold_max": float(values.max()),
    }


# ---------------------------------------------------------------------------------------------
# The fold ensemble's test submission


def ensemble_submission(cfg: Config, run_dirs: list[Path], out: Path) -> Path:
    """The test submission of the fold models, combined by cfg.ensemble.method, written checked.

    mbr: per row, the fold submissions' consensus (dsum.metric.mbr). logits: one beam search over the
    fold models' averaged log-probabilities. average: one model of the fold models' mean weights
    (<parent>/checkpoint-average), then predict. logits and average need the folds to share one tokenizer
    (a hub model's, as KoBART's); a tiny model trains its tokenizer on each fold's rows, so they refuse it.
    """
    from dsum.data.submission import write_checked_submission

    method = cfg.ensemble.method
    if method == "mbr":
        from dsum.metric.mbr import Source, mbr

        sources = [Source(d.name, read_predictions(d / "submission.csv")) for d in run_dirs]
        predictions = mbr(sources, analyser=cfg.metric.tokenizer).summaries
        return write_checked_submission(out, predictions, cfg.data.test, cfg.data.sample_submission)
    from dsum.verbs.predict import predict

    checkpoints = [d / "checkpoint-best" for d in run_dirs]
    if method == "average":
        from dsum.verbs.average import average_checkpoints

        averaged = average_checkpoints(checkpoints, out.parent / "checkpoint-average")
        return Path(predict(cfg, averaged, "test", out)["path"])
    # logits: one beam search over the fold models' mean log-probabilities (dsum.model.generate.LogitEnsemble).
    return Path(predict(cfg, checkpoints, "test", out)["path"])


# ---------------------------------------------------------------------------------------------
# The whole command


def train_folds(cfg: Config, k: int, include_dev: bool = False) -> Path:
    """Train K fold runs (only the unfinished ones on a rerun); OOF score; fold-ensemble submission. Returns the parent."""
    from dsum.verbs.predict import check_split_inputs

    check_fold_flags(k, include_dev)
    check_split_inputs(cfg, "test")  # the fold ensemble's submission needs them: refused before K trainings, not after
    parent, plan, pool = plan_folds(cfg, k, include_dev)
    run_dirs = []
    for fold in range(1, k + 1):
        log.info(f"fold {fold}/{k}: {len(plan['folds'][fold - 1])} held-out rows")
        run_dir, what = train_fold(cfg, parent, fold)
        if what == "skipped":
            log.info(f"fold {fold}/{k}: finished before, skipped ({run_dir})")
        run_dirs.append(run_dir)
    oof = out_of_fold(cfg, parent, k, pool)
    submission = ensemble_submission(cfg, run_dirs, parent / "submission.csv")
    write_json(parent / "folds.json", {**plan, "oof": oof, "ensemble": cfg.ensemble.method, "submission": str(submission)})
    log.info(
        f"out-of-fold board score {oof['score']:.2f} over {oof['rows']} rows; "
        f"folds {oof['fold_min']:.2f}-{oof['fold_max']:.2f}, std {oof['fold_std']:.2f}"
    )
    log.info(f"submission (fold ensemble, checked): {submission}")
    return parent
