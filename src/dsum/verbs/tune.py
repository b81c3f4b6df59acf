"""Optuna search over any config key: every trial a full dsum run (or a decoding-only pass).

A study lives in an RDB storage (SQLite by default, PostgreSQL for several machines), so a re-run
of the same command continues it and any number of workers can share it. Each training trial is
an ordinary run directory under runs/<study>/trials/ with its own tracker run (W&B group = the
study). The dev score is reported at every evaluation and the pruner can stop a trial there. A
trial that fails (out of memory, NaN loss, an invalid combination) is recorded with its reason and
the study goes on; a worker killed mid-trial loses only that trial, which a later worker retries
once its heartbeat has gone stale.
"""

from __future__ import annotations

import gc
import json
import math
import multiprocessing
import os
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from transformers import TrainerCallback

from dsum.util.atomic import atomic_write_text
from dsum.config import Config, SearchParam, TuneConfig, set_dotted, validate_config
from dsum.util.errors import RunInterrupted, RunStopped, UserError
from dsum.util.verbosity import apply_to_optuna

# Stale-trial grace period, in heartbeats: long enough for a slow evaluation not to look dead.
GRACE_HEARTBEATS = 3


def study_dir(cfg: Config) -> Path:
    return cfg.general.output_dir / tune_section(cfg).study_name


def tune_section(cfg: Config) -> TuneConfig:
    if cfg.tune is None:
        raise UserError("this config has no tune: section; add one (see configs/demo-tune.yaml) to run dsum tune")
    return cfg.tune


def storage_url(cfg: Config) -> str:
    return tune_section(cfg).storage or f"sqlite:///{(study_dir(cfg) / 'optuna.db').resolve()}"


# Heartbeat retries and the matplotlib plots are marked experimental; say so once in the docs, not per call.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
apply_to_optuna()  # `dsum -q/-v` (also in a spawned worker: the level travels in DSUM_VERBOSITY)


def open_storage(cfg: Config) -> optuna.storages.RDBStorage:
    t = tune_section(cfg)
    url = storage_url(cfg)
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        study_dir(cfg).mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=t.heartbeat_interval,
            grace_period=GRACE_HEARTBEATS * t.heartbeat_interval,
            # A trial whose worker died is failed, then queued again with the same parameters.
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
        )
    except Exception as exc:  # sqlalchemy raises many kinds; all mean the storage cannot be used
        raise UserError(f"cannot open the Optuna storage {redact_url(url)}: {str(exc).splitlines()[0]}; check tune.storage") from None


def redact_url(url: str) -> str:
    """postgresql://user:password@host/db → postgresql://user:***@host/db."""
    head, at, tail = url.rpartition("@")
    if not at or ":" not in head.split("//", 1)[-1]:
        return url
    scheme_user, _, _ = head.rpartition(":")
    return f"{scheme_user}:***@{tail}"


def make_sampler(t: TuneConfig, worker: int) -> optuna.samplers.BaseSampler:
    seed = None if t.seed is None else t.seed + worker
    if t.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(t: TuneConfig) -> optuna.pruners.BasePruner:
    if t.pruner == "none" or t.mode == "decode":
        return optuna.pruners.NopPruner()
    if t.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=t.n_startup_trials, n_warmup_steps=t.n_warmup_steps)


def load_study(cfg: Config, worker: int = 0) -> optuna.Study:
    t = tune_section(cfg)
    return optuna.create_study(
        study_name=t.study_name,
        storage=open_storage(cfg),
        sampler=make_sampler(t, worker),
        pruner=make_pruner(t),
        direction=t.direction,
        load_if_exists=True,
    )


def suggest(trial: optuna.Trial, space: dict[str, SearchParam]) -> dict[str, Any]:
    """A value for every searched key."""
    values = {}
    for key, p in space.items():
        if p.type == "categorical":
            value = trial.suggest_categorical(key, p.choices)
        elif p.type == "int":
            value = trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            value = trial.suggest_float(key, p.low, p.high, step=p.step, log=p.log)
        values[key] = value
    return values


def with_values(cfg: Config, values: dict[str, Any]) -> Config:
    """The config with dotted keys set; an invalid combination raises UserError (the trial fails)."""
    raw = cfg.model_dump(mode="json")
    for key, value in values.items():
        set_dotted(raw, key, value, what="tune.space:", create=False)
    return validate_config(raw, source=f"trial values {values}")


def check_space(cfg: Config) -> None:
    """Every searched key must exist in the config, before a night of failing trials."""
    t = tune_section(cfg)
    if not t.space:
        raise UserError("tune.space is empty; add at least one key to search, e.g. training.learning_rate")
    for key, p in t.space.items():
        sample = p.choices[0] if p.type == "categorical" else p.low
        with_values(cfg, {key: int(sample) if p.type == "int" else sample})
    if t.mode == "decode":
        if t.checkpoint is None or not Path(t.checkpoint).is_dir():
            raise UserError(f"tune.mode=decode needs tune.checkpoint, an existing model folder (got {t.checkpoint})")
        if any(not key.startswith("generation.") for key in t.space):
            raise UserError("tune.mode=decode searches generation.* keys only; move the others to a training study")


class PruningCallback(TrainerCallback):
    """Reports the dev score to Optuna at each evaluation; stops a pruned trial at once; NaN loss fails it."""

    def __init__(self, trial: optuna.Trial, objective: str):
        self.trial, self.key, self.evaluations = trial, "eval_board_score" if objective == "score" else f"eval_{objective}", 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss} at step {state.global_step}")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(self.key)
        if value is None:
            return
        self.trial.report(value, self.evaluations)
        self.trial.set_user_attr("epochs_trained", state.epoch)
        self.evaluations += 1
        if self.trial.should_prune():
            note = f"pruned after evaluation {self.evaluations} ({self.key} {value:.2f})"
            self.trial.set_user_attr("note", note)
            raise optuna.TrialPruned(note)


def train_objective(cfg: Config):
    from dsum.runs.directory import mark_status
    from dsum.verbs.train import train

    t = tune_section(cfg)

    def objective(trial: optuna.Trial) -> float:
        trial_cfg = with_values(cfg, suggest(trial, t.space))
        general = trial_cfg.general.model_copy(
            update={"output_dir": study_dir(cfg) / "trials", "run_name": f"{t.study_name}-trial-{trial.number:03d}"}
        )
        tracking = trial_cfg.tracking.model_copy(
            update={"group": trial_cfg.tracking.group or t.study_name, "tags": [*trial_cfg.tracking.tags, "optuna"]}
        )
        trial_cfg = trial_cfg.model_copy(update={"general": general, "tracking": tracking, "tune": None})
        trial.set_user_attr("run_dir", str(general.output_dir / general.run_name))
        try:
            run_dir = train(trial_cfg, callbacks=[PruningCallback(trial, t.objective)])
        except optuna.TrialPruned:
            mark_status(general.output_dir / general.run_name, "pruned")
            raise
        except RunStopped as exc:
            if exc.status == "interrupted":  # SIGTERM / Ctrl-C: the study stops, not only this trial
                raise RunInterrupted(str(exc), exc.status, exc.exit_code) from None
            raise  # diverged, out of memory...: this trial fails, the study goes on
        trial.set_user_attr("run_dir", str(run_dir))
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        trial.set_user_attr("epochs_trained", metrics["epochs_trained"])
        return metrics["dev"][t.objective]

    return objective


def decode_objective(cfg: Config):
    """Generation settings only: the checkpoint is loaded once and dev is generated per trial (predict_split, nothing written)."""
    from dsum.data.text import normalizer_from_config
    from dsum.model.loading import checkpoint_folder
    from dsum.verbs.predict import check_split_inputs, load_checkpoint, predict_split

    t = tune_section(cfg)
    examples = check_split_inputs(cfg, "dev")
    cfg, model, tokenizer = load_checkpoint(cfg, [checkpoint_folder(t.checkpoint)])
    normalizer = normalizer_from_config(cfg.data)

    def objective(trial: optuna.Trial) -> float:
        trial_cfg = with_values(cfg, suggest(trial, t.space))
        score = predict_split(trial_cfg, model, tokenizer, "dev", None, normalizer, examples)
        for part in ("score", "rouge1", "rouge2", "rougeL"):
            trial.set_user_attr(part, score[part])
        return score[t.objective]

    return objective


def recorded(objective):
    """Failures keep their reason on the trial; memory is given back before the next trial."""

    def run(trial: optuna.Trial) -> float:
        try:
            return objective(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500])
            raise
        finally:
            gc.collect()
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except ImportError:
                pass

    return run


def run_worker(cfg: Config, n_trials: int, worker: int = 0, threads: int | None = None) -> None:
    """One worker: pull trials from the shared study until this worker's share is done."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    t = tune_section(cfg)
    study = load_study(cfg, worker)
    objective = train_objective(cfg) if t.mode == "train" else decode_objective(cfg)
    try:
        study.optimize(recorded(objective), n_trials=n_trials, timeout=t.timeout, catch=(Exception,), gc_after_trial=True)
    except RunInterrupted as exc:
        raise RunStopped(str(exc), exc.status, exc.exit_code) from None


def _worker_entry(raw: dict[str, Any], n_trials: int, worker: int, threads: int) -> None:
    gpus = os.environ.get("DSUM_WORKER_GPUS")
    if gpus:  # one GPU per worker, round robin
        ids = gpus.split(",")
        os.environ["CUDA_VISIBLE_DEVICES"] = ids[worker % len(ids)]
    run_worker(validate_config(raw), n_trials, worker, threads)


def tune(cfg: Config, workers: int = 1) -> optuna.Study:
    """Run n_trials (split over `workers` processes sharing the storage); return the study."""
    t = tune_section(cfg)
    check_space(cfg)
    study = load_study(cfg)  # creates it once, before the workers race to
    if workers <= 1:
        run_worker(cfg, t.n_trials)
        return study
    import torch

    if torch.cuda.device_count() > 1:
        os.environ["DSUM_WORKER_GPUS"] = ",".join(str(i) for i in range(torch.cuda.device_count()))
    threads = max(1, (os.cpu_count() or 1) // workers)
    shares = [t.n_trials // workers + (i < t.n_trials % workers) for i in range(workers)]
    context = multiprocessing.get_context("spawn")  # CUDA and fork do not mix
    processes = [
        context.Process(target=_worker_entry, args=(cfg.model_dump(mode="json"), share, i, threads))
        for i, share in enumerate(shares)
        if share
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    return study


def trials_table(study: optuna.Study) -> list[dict[str, Any]]:
    rows = []
    for trial in study.get_trials(deepcopy=False):
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name.lower(),
                "value": trial.value,
                **trial.params,
                "epochs": trial.user_attrs.get("epochs_trained"),
                "seconds": trial.duration.total_seconds() if trial.duration else None,
                "note": trial.user_attrs.get("fail_reason") or trial.user_attrs.get("note", ""),
            }
        )
    return rows


def write_results(cfg: Config, study: optuna.Study) -> dict[str, Any]:
    """best.yaml, trials.csv and the plots under runs/<study>/; returns what was written."""
    import pandas as pd

    out = study_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    rows = trials_table(study)
    atomic_write_text(out / "trials.csv", pd.DataFrame(rows).to_csv(index=False))
    result: dict[str, Any] = {"trials": rows, "dir": out, "dashboard": f"optuna-dashboard {redact_url(storage_url(cfg))}"}
    complete = [tr for tr in study.trials if tr.state == TrialState.COMPLETE]
    if not complete:
        return result
    best = study.best_trial
    best_cfg = with_values(cfg, best.params)
    general = best_cfg.general.model_copy(update={"run_name": None, "notes": f"best of study {study.study_name} (trial {best.number})"})
    best_cfg = best_cfg.model_copy(update={"general": general, "tune": None})
    header = f"# Best trial {best.number} of study {study.study_name}: {tune_section(cfg).objective} {best.value:.4f}\n# Run: dsum train -c {out / 'best.yaml'}\n"
    atomic_write_text(out / "best.yaml", header + best_cfg.to_yaml())
    result.update(best_number=best.number, best_value=best.value, best_params=best.params, best_yaml=out / "best.yaml")
    result["plots"] = save_plots(study, out / "plots")
    return result


def require_best(cfg: Config, result: dict[str, Any]) -> None:
    """A study none of whose trials finished is an error (write_results wrote trials.csv with the reasons)."""
    if "best_yaml" not in result:
        raise UserError(f"no trial of study {tune_section(cfg).study_name} finished; the note column of {result['dir']}/trials.csv says why")


def save_plots(study: optuna.Study, out: Path) -> list[Path]:
    """History, importances and parallel coordinates from optuna.visualization.matplotlib, as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    out.mkdir(parents=True, exist_ok=True)
    saved = []
    plots = {
        "history": vis.plot_optimization_history,
        "importances": vis.plot_param_importances,
        "parallel_coordinate": vis.plot_parallel_coordinate,
        "intermediate_values": vis.plot_intermediate_values,
    }
    for name, plot in plots.items():
        try:
            axes = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue  # e.g. importances need two finished trials with different values
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.set_size_inches(9, 5)
        figure.tight_layout()
        path = out / f"{name}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        saved.append(path)
    return saved
