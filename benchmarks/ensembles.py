"""Ensembles: MBR, the logit ensemble and the weight average of N seeds, against the best single model.

Run from anywhere: .venv/bin/python benchmarks/ensembles.py [--models 3] [--epochs 10] [--set KEY=VALUE ...]

N demo models (configs/demo.yaml made smaller still: the tests' TINY settings, more epochs so the
models learn something) are trained on the bundled sample, identical but for `general.seed`
(1, 2, ..., N). Same training texts, so the tokenizer each run trains is the same, id for id, and
the checkpoints can be combined at the logit and the weight level. On dev (20 rows of the sample,
or --dev), each method's summaries are scored the board's way, per row:

* single: each model's checkpoint-best (its run's dev_predictions.csv);
* MBR (dsum.verbs.ensemble.mbr): per row, the model summary the other models' summaries agree with most;
* logit ensemble (dsum predict with N checkpoints): one beam search over the mean of the N models'
  next-token log-probabilities;
* weight average (dsum.verbs.average): one model whose weights are the mean of the N checkpoints'.
  Expected poor: models trained from different random initialisations sit in different basins
  (their hidden units are permuted relative to each other), so the mean of their weights is not a
  model of either; averaging is meant for checkpoints of one run or fold models fine-tuned from one
  pretrained model. It is here to show the gap, not as a candidate.

Per method: the dev score, the difference from the best single model (chosen on this same dev set,
which flatters it slightly) with the paired bootstrap's 95% interval over dev rows
(dsum.metric.bootstrap.paired_bootstrap, 1,000 seeded resamples) and the share of resamples in which the
method scores higher. With 20 dev rows the intervals are wide: a few points either way is noise.
The per-row oracle (the best single model's summary for each row, chosen with the references) is
printed as the ceiling for choosing among the N summaries. The last line is
`ratio: <best ensemble score / best single score>` (above 1: an ensemble beats every single model).

Caveat, measured: on the bundled sample (80 training dialogues) these tiny models write one and the
same summary for every dev dialogue, a list of the summaries' most frequent morphemes (tried up to
40 epochs, and the demo's own model size for 30 epochs: still one summary). The script says so
when it happens (`distinct dev summaries per model`); then the table checks that each method runs
end to end and compares word lists, not the value of ensembling (MBR, for one, cannot do better
than pick the most central of N constant strings). Point --set data.train=... and --dev at real
data for numbers that mean something.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from common import REPO, report_load  # benchmarks/ is on sys.path when run as a script

from dsum.verbs.average import average_checkpoints
from dsum.metric.bootstrap import paired_bootstrap
from dsum.config import load_config
from dsum.data.files import read_examples, read_predictions, read_table, reference_map
from dsum.verbs.ensemble import Source, mbr
from dsum.metric.rouge import score_texts
from dsum.verbs.predict import predict
from dsum.verbs.train import train

CONFIG = REPO / "configs" / "demo.yaml"

# tests/conftest.py's TINY, with epochs and logging left to the options below.
TINY = [
    "model.tiny.d_model=32",
    "model.tiny.layers=1",
    "model.tiny.ffn_dim=64",
    "model.tiny.vocab_size=800",
    "training.batch_size=8",
    "training.eval_batch_size=20",
    "training.logging_steps=5",
    "generation.num_beams=2",
    "generation.max_new_tokens=30",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=3, help="how many seeds to train (N ≥ 2)")
    parser.add_argument("--epochs", type=float, default=10, help="training.epochs of every model")
    parser.add_argument("--dev", type=Path, default=None, help="data.dev (default: the config's, the sample's 20 rows)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="a config override for every model, e.g. model.tiny.layers=2 (repeatable)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--out", type=Path, default=None, help="where the runs and ensemble outputs go (default: a temporary folder)")
    return parser.parse_args()


def per_row(predictions: dict[str, str], references, analyser: str) -> tuple[float, dict[str, float]]:
    score = score_texts(predictions, references, analyser=analyser)
    return score.score, {row.fname: row.score for row in score.per_row}


def run(args: argparse.Namespace, out: Path) -> None:
    began = time.perf_counter()
    overrides = [*TINY, f"training.epochs={args.epochs:g}", f"general.output_dir={out / 'runs'}", *args.overrides]
    if args.dev is not None:
        overrides.append(f"data.dev={args.dev.resolve()}")
    base = load_config(CONFIG, overrides)
    m, t, g = base.model.tiny, base.training, base.generation
    print(
        f"{args.models} models, seeds 1..{args.models}; tiny {m.architecture}: d_model {m.d_model}, {m.layers} layer(s), "
        f"ffn {m.ffn_dim}, vocab {m.vocab_size}; {t.epochs:g} epochs, batch {t.batch_size}, lr {t.learning_rate:g}; "
        f"{g.num_beams} beams, max {g.max_new_tokens} new tokens; extra overrides {args.overrides or 'none'}"
    )
    examples = read_examples(base.data.dev, require_summary=True)
    references = reference_map(examples)
    analyser = base.metric.tokenizer

    # Single models.
    runs, seconds = [], {}
    start = time.perf_counter()
    for seed in range(1, args.models + 1):
        cfg = load_config(CONFIG, [*overrides, f"general.seed={seed}", f"general.run_name=ens-seed{seed}"])
        runs.append(train(cfg))
    seconds["train"] = time.perf_counter() - start

    methods: dict[str, tuple[float, dict[str, float]]] = {}
    singles: dict[str, dict[str, str]] = {}
    for seed, run_dir in enumerate(runs, start=1):
        table = read_table(run_dir / "dev_predictions.csv")
        singles[f"seed {seed}"] = dict(zip(table["fname"], table["prediction"]))
        methods[f"single: seed {seed}"] = per_row(singles[f"seed {seed}"], references, analyser)

    # MBR over the N models' dev summaries.
    start = time.perf_counter()
    result = mbr([Source(label, texts) for label, texts in singles.items()], analyser=analyser)
    methods[f"MBR over {args.models}"] = per_row(result.summaries, references, analyser)
    seconds["mbr"] = time.perf_counter() - start

    # Logit ensemble of the N checkpoints.
    start = time.perf_counter()
    checkpoints = [run_dir / "checkpoint-best" for run_dir in runs]
    ens = predict(base, checkpoints, "dev", out / "logit_ensemble_dev.csv")
    methods[f"logit ensemble of {args.models}"] = per_row(read_predictions(ens["path"]), references, analyser)
    seconds["logit"] = time.perf_counter() - start

    # Weight average of the N checkpoints.
    start = time.perf_counter()
    averaged = average_checkpoints(checkpoints, out / "averaged")
    avg = predict(base, averaged, "dev", out / "weight_average_dev.csv")
    methods[f"weight average of {args.models}"] = per_row(read_predictions(avg["path"]), references, analyser)
    seconds["average"] = time.perf_counter() - start

    single_names = [name for name in methods if name.startswith("single")]
    best = max(single_names, key=lambda name: methods[name][0])
    best_rows = methods[best][1]
    oracle_rows = {f: max(methods[name][1][f] for name in single_names) for f in best_rows}
    oracle = sum(oracle_rows.values()) / len(oracle_rows)

    print()
    print(
        f"dev: {len(examples)} rows of {base.data.dev}; training {seconds['train']:.0f} s for {args.models} models; "
        f"MBR {seconds['mbr']:.1f} s, logit ensemble {seconds['logit']:.1f} s, weight average {seconds['average']:.1f} s"
    )
    header = ("method", "dev score", f"Δ vs best single ({best.split(': ')[1]})", "95% interval", "wins")
    rows = []
    for name, (score, rows_of) in methods.items():
        if name == best:
            rows.append((name + " (best)", f"{score:.2f}", "—", "—", "—"))
            continue
        b = paired_bootstrap(best_rows, rows_of)
        rows.append((name, f"{score:.2f}", f"{b.diff:+.2f}", f"{b.low:+.2f} .. {b.high:+.2f}", f"{b.b_wins:.0%}"))
    distinct = {label: len(set(texts.values())) for label, texts in singles.items()}
    print(f"distinct dev summaries per model: {', '.join(f'{label} {n}' for label, n in distinct.items())} (of {len(examples)} rows)")
    if max(distinct.values()) <= max(1, len(examples) // 10):
        print("  warning: the models write (nearly) one summary for every dialogue: they have learned the frequent morphemes of")
        print("  summaries, not to read the input, so the rows below compare word lists, not ensembling (more epochs do not help; more training data should)")
    print_table(header, rows)
    wins = result.wins()
    print(f"MBR picked: {', '.join(f'{label} {n}' for label, n in wins.items())} of {len(result.fnames)} rows")
    print(f"oracle (per row, the best of the {args.models} single summaries, chosen with the references): {oracle:.2f}")
    print("wins: share of 1,000 paired bootstrap resamples of dev rows in which the method beats the best single model")
    ensembles = [name for name in methods if not name.startswith("single")]
    top = max(ensembles, key=lambda name: methods[name][0])
    print(f"best ensemble: {top} ({methods[top][0]:.2f}) vs best single {methods[best][0]:.2f}")
    print(f"wall time {time.perf_counter() - began:.0f} s")
    print(f"ratio: {methods[top][0] / methods[best][0]:.3f}")


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def main() -> None:
    args = parse_args()
    if args.models < 2:
        raise SystemExit("--models must be at least 2: an ensemble needs two models")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    report_load()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        run(args, args.out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(args, Path(tmp))


if __name__ == "__main__":
    main()
