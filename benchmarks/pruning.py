"""Pruning: the same Optuna study on the demo recipe with and without the median pruner.

Run from anywhere: .venv/bin/python benchmarks/pruning.py [--trials 12] [--epochs E] [--set KEY=VALUE ...]

Both studies search configs/demo-tune.yaml's space (learning rate, batch size, warmup, weight
decay) with the same seeded TPE sampler for --trials trials each, every trial a full dsum
training run on the bundled sample (tiny BART, CPU) evaluated with the board's score after every
epoch. One study prunes with MedianPruner (n_startup_trials and n_warmup_steps from the config),
the other never prunes. Printed per study: training epochs spent (the sum over trials of the
epochs each trained before it finished or was pruned), wall time and the best dev score; then the
share of epochs pruning saved. The last line is `ratio: <epochs without pruning / epochs with>`.

The two samplers see the same seed, but TPE conditions on past results and pruned trials report
fewer values, so after the startup trials the two studies may try different parameters; the best
scores are compared, not trial by trial.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from dsum.config import load_config
from dsum.verbs.tune import load_study, run_worker, with_values

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "demo-tune.yaml"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=float, default=None, help="training.epochs of every trial (default: the config's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="a config override for every trial, e.g. model.tiny.layers=1 (repeatable)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--out", type=Path, default=None, help="where the studies' runs go (default: a temporary folder)")
    return parser.parse_args()


def run_study(base, out: Path, name: str, pruner: str, trials: int) -> dict:
    t = base.tune.model_copy(update={"study_name": name, "pruner": pruner, "n_trials": trials, "storage": None})
    cfg = with_values(base, {"general.output_dir": str(out)}).model_copy(update={"tune": t})
    start = time.perf_counter()
    run_worker(cfg, trials)
    seconds = time.perf_counter() - start
    study = load_study(cfg)
    finished = [tr for tr in study.trials if tr.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    epochs = sum(tr.user_attrs.get("epochs_trained", 0) for tr in finished)
    return {
        "name": name,
        "epochs": epochs,
        "seconds": seconds,
        "best": study.best_value,
        "pruned": sum(tr.state == TrialState.PRUNED for tr in study.trials),
        "failed": sum(tr.state == TrialState.FAIL for tr in study.trials),
        "values": [tr.value for tr in study.trials if tr.state == TrialState.COMPLETE],
    }


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    overrides = args.overrides + ([] if args.epochs is None else [f"training.epochs={args.epochs:g}"])
    base = load_config(CONFIG, overrides)
    t = base.tune
    print(
        f"{args.trials} trials per study, {base.training.epochs:g} epochs each at most, TPE seed {t.seed}, "
        f"overrides {args.overrides or 'none'}; "
        f"median pruner: n_startup_trials {t.n_startup_trials}, n_warmup_steps {t.n_warmup_steps}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        results = [run_study(base, out, f"bench-{pruner}", pruner, args.trials) for pruner in ("median", "none")]
    print()
    for r in results:
        print(
            f"{r['name']}: {r['epochs']:.0f} training epochs in {r['seconds']:.0f} s; best dev score {r['best']:.2f}; "
            f"{r['pruned']} pruned, {r['failed']} failed"
        )
    pruned, full = results
    print(f"epochs saved by pruning: {1 - pruned['epochs'] / full['epochs']:.0%}")
    print(f"best score difference (pruned - unpruned): {pruned['best'] - full['best']:+.2f}")
    spread = sorted(full["values"])
    print(f"for scale, the unpruned study's completed trials scored {spread[0]:.2f} .. {spread[-1]:.2f}")
    print(f"ratio: {full['epochs'] / pruned['epochs']:.2f}")


if __name__ == "__main__":
    main()
