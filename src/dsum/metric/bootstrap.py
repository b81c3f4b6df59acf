"""Telling a gain from noise: a paired bootstrap over dev rows and the spread over topic halves.

The board splits its test set into a public and a private half by topic, and teams routinely lose
1-3 points from one to the other: differences of that size between two runs are often noise.
Two numbers say how much:

* paired_bootstrap: resample the dev rows both systems scored (the same rows for both, seeded,
  1,000 times): the mean difference B − A, its 95% interval and the share of resamples in which
  B scores higher. An interval that holds 0 is no evidence that B is better.
* topic_halves: split dev's topics at random into two halves (as the board splits test), many
  times (seeded): how far apart the two halves' scores of ONE system fall (mean |half1 − half2|
  and the 95% range of half1 − half2): the public/private gap to expect from the split alone.

Scores are per-row board scores ((R1+R2+RL)/3×100, dev_predictions.csv's `score` column), so the
mean of a resample is a board score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from dsum.util.errors import UserError

RESAMPLES = 1000
SEED = 0


@dataclass(frozen=True)
class Bootstrap:
    """B − A over the rows both hold: the observed mean difference and its bootstrap distribution."""

    rows: int
    a: float  # mean score of A on those rows
    b: float
    diff: float  # b − a
    low: float  # 2.5th percentile of the resampled differences
    high: float  # 97.5th
    b_wins: float  # share of resamples with B − A > 0
    resamples: int
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self, a: str = "A", b: str = "B") -> str:
        return (f"{b} − {a} {self.diff:+.2f} (95% interval {self.low:+.2f} .. {self.high:+.2f}); "
                f"{b} wins {self.b_wins:.1%} of {self.resamples} resamples of {self.rows} rows")


def paired_bootstrap(
    a: Mapping[str, float], b: Mapping[str, float], resamples: int = RESAMPLES, seed: int = SEED
) -> Bootstrap:
    """Paired bootstrap of mean(B) − mean(A) over the fnames both score (rows resampled with replacement)."""
    shared = [f for f in a if f in b]
    if not shared:
        raise UserError("the two systems share no scored dev row: compare runs scored on the same dev file")
    sa = np.array([a[f] for f in shared], dtype=float)
    sb = np.array([b[f] for f in shared], dtype=float)
    delta = sb - sa
    rng = np.random.default_rng(seed)
    # One index matrix for all resamples: 1,000 × 499 ints, far below a megabyte per row of dev.
    means = delta[rng.integers(0, len(delta), size=(resamples, len(delta)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Bootstrap(
        rows=len(shared), a=float(sa.mean()), b=float(sb.mean()), diff=float(delta.mean()),
        low=float(low), high=float(high), b_wins=float((means > 0).mean()), resamples=resamples, seed=seed,
    )


@dataclass(frozen=True)
class Halves:
    """One system's score on random topic halves of dev: what the public/private split alone moves."""

    rows: int
    topics: int
    score: float  # on all rows
    mean_gap: float  # mean |half1 − half2|
    low: float  # 2.5th percentile of half1 − half2
    high: float  # 97.5th
    splits: int
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return (f"topic halves: mean |public − private| {self.mean_gap:.2f}, 95% range {self.low:+.2f} .. "
                f"{self.high:+.2f} ({self.splits} random splits of {self.topics} topics, {self.rows} rows)")


def topic_halves(
    scores: Mapping[str, float], topics: Mapping[str, str | None], splits: int = RESAMPLES, seed: int = SEED
) -> Halves:
    """Split the topics of the scored rows at random into two halves `splits` times (seeded).

    Rows without a topic (or not in `topics`) are left out. Each split puts every topic in one half
    (half of the topics, rounded down, in the first), as the board keeps a topic on one side.
    """
    rows = [(f, topics.get(f)) for f in scores if topics.get(f)]
    names = sorted({t for _, t in rows})
    if len(names) < 2:
        raise UserError("topic halves need a dev file with a `topic` column holding at least 2 topics (dev.csv has one)")
    topic_index = {t: i for i, t in enumerate(names)}
    of_row = np.array([topic_index[t] for _, t in rows])
    values = np.array([scores[f] for f, _ in rows], dtype=float)
    rng = np.random.default_rng(seed)
    gaps = np.empty(splits)
    for s in range(splits):
        first = np.zeros(len(names), dtype=bool)
        first[rng.permutation(len(names))[: len(names) // 2]] = True
        in_first = first[of_row]
        gaps[s] = values[in_first].mean() - values[~in_first].mean()
    low, high = np.percentile(gaps, [2.5, 97.5])
    return Halves(rows=len(rows), topics=len(names), score=float(values.mean()), mean_gap=float(np.abs(gaps).mean()),
                  low=float(low), high=float(high), splits=splits, seed=seed)


def row_scores(path, column: str = "score") -> dict[str, float]:
    """fname → per-row score from a dev_predictions.csv (or any CSV with fname and `column`)."""
    from dsum.data.files import read_table

    table = read_table(path)
    if "fname" not in table.columns or column not in table.columns:
        raise UserError(f"{path} has no fname/{column} columns: point at a dev_predictions.csv written by dsum")
    return {f: float(v) for f, v in zip(table["fname"], table[column])}


def topics_of(dev_file) -> dict[str, str | None]:
    """fname → topic of a dev file (None where it has no topic)."""
    from dsum.data.files import read_examples

    return {ex.fname: ex.topic for ex in read_examples(dev_file)}
