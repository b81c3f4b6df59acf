"""Minimum-Bayes-risk (MBR) choice among candidate summaries, scored with the board's Korean ROUGE.

Per row, each candidate c gets the expected board metric against the other candidates,

    utility(c) = Σ_{c' ≠ c} w(c') · metric(c, c'),

with metric = (w1·R1 + w2·R2 + wL·RL) / (w1 + w2 + wL) × 100, the F1s computed exactly as
dsum.metric.rouge computes them for the board (c as the prediction, c' as the reference), and w the
weight of the source c' comes from (default 1). The candidate with the highest utility is chosen:
the one the others agree with most. Ties go to the first source in the order given. Identical
candidates from two sources both count: agreement is the point.

Each distinct text is analysed into morphemes once (dsum.metric.rouge.Analysed), and identical
texts within a row are scored once. Reading the candidates from files and writing the choice is the
verb's job (dsum.verbs.ensemble); `score_against` tells, with references, whether the choice beats
the best single source beyond noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dsum.metric.bootstrap import Bootstrap, Halves, paired_bootstrap, topic_halves
from dsum.metric.rouge import Analysed, strip_special
from dsum.util.errors import UserError


@dataclass(frozen=True)
class Source:
    """One candidate per fname (one prediction file, or one rank of a candidates file)."""

    label: str
    texts: dict[str, str]  # fname → summary
    weight: float = 1.0


def check_weights(values: Sequence[float] | None, count: int | None, option: str) -> list[float] | None:
    """Weights as MBR takes them: `count` of them (when given), each ≥ 0, not all 0; None stays None."""
    if values is None:
        return None
    values = [float(v) for v in values]
    shown = ",".join(f"{v:g}" for v in values)
    if count is not None and len(values) != count:
        raise UserError(f"{option} {shown!r} has {len(values)} values; give {count}, e.g. {option} {','.join(['1'] * count)}")
    if any(v < 0 for v in values) or not any(values):
        raise UserError(f"{option} {shown!r}: weights must be ≥ 0 and not all 0")
    return values


def combine(rouge: tuple[float, float, float], weights: Sequence[float]) -> float:
    """(R1, R2, RL) F1 → their weighted mean × 100; equal weights give the board score."""
    return sum(w * r for w, r in zip(weights, rouge)) / sum(weights) * 100


@dataclass
class MBRResult:
    labels: list[str]  # source labels, in order
    fnames: list[str]  # rows, in the first source's order
    choice: list[int]  # per row: the index of the chosen source
    utility: list[float]  # per row: the chosen candidate's expected metric (weighted sum over the others)
    summaries: dict[str, str]  # fname → chosen summary (as the source wrote it)
    candidates: dict[str, list[str]] = field(repr=False, default_factory=dict)  # fname → cleaned texts, source order

    def wins(self) -> dict[str, int]:
        """Rows each source won (0 included), in source order."""
        counts = dict.fromkeys(self.labels, 0)
        for index in self.choice:
            counts[self.labels[index]] += 1
        return counts


def mbr(
    sources: Sequence[Source], metric_weights: Sequence[float] = (1.0, 1.0, 1.0), analyser: str = "mecab",
    analysed: Analysed | None = None,
) -> MBRResult:
    """Per row, the candidate with the highest expected metric against the others (see the module docstring).

    Every source must hold the fnames of the first; at least two sources; metric weights 3 numbers ≥ 0, not all 0.
    """
    metric_weights = check_weights(metric_weights, 3, "--weights")
    if len(sources) < 2:
        raise UserError(f"{len(sources)} candidate(s) per row: MBR needs at least two (more files, or --candidates K)")
    check_weights([s.weight for s in sources], None, "--source-weights")
    require_same_fnames(sources)
    analysed = analysed or Analysed(analyser)
    source_weights = [s.weight for s in sources]
    choice, utility, summaries, candidates = [], [], {}, {}
    for fname in sources[0].texts:
        # The board strips the model's special strings from predictions; candidates are predictions.
        texts = [strip_special(s.texts[fname]) for s in sources]
        unique = list(dict.fromkeys(texts))
        slot = [unique.index(t) for t in texts]
        # metric(hyp=unique i, ref=unique j), each distinct pair once.
        pair = [[combine(analysed.rouge(h, r), metric_weights) for r in unique] for h in unique]
        best, best_utility = 0, float("-inf")
        for k in range(len(texts)):
            u = sum(source_weights[j] * pair[slot[k]][slot[j]] for j in range(len(texts)) if j != k)
            if u > best_utility:  # strict: ties keep the first source
                best, best_utility = k, u
        choice.append(best)
        utility.append(best_utility)
        summaries[fname] = sources[best].texts[fname]
        candidates[fname] = texts
    return MBRResult([s.label for s in sources], list(sources[0].texts), choice, utility, summaries, candidates)


def require_same_fnames(sources: Sequence[Source]) -> None:
    first = sources[0]
    if not first.texts:
        raise UserError(f"{first.label} holds no rows: give prediction files with one row per dialogue")
    for source in sources[1:]:
        missing = [f for f in first.texts if f not in source.texts]
        extra = [f for f in source.texts if f not in first.texts]
        if missing or extra:
            shown = ", ".join((missing or extra)[:3])
            raise UserError(
                f"{source.label} and {first.label} hold different rows ({len(missing)} missing, {len(extra)} extra: "
                f"{shown}); every source must predict the same fnames (same split, every rank of every row)"
            )


# ---------------------------------------------------------------------------------------------
# Against references


@dataclass
class GoldReport:
    scores: dict[str, float]  # source label → board score on the gold rows
    mbr: float
    oracle: float
    best_source: str
    row_scores: dict[str, list[float]]  # source label → per-row board score, in result.fnames order
    mbr_rows: list[float]
    oracle_rows: list[float]
    oracle_choice: list[int]
    bootstrap: Bootstrap  # A = the best single source, B = MBR
    halves: Halves | None  # MBR's score on random topic halves (None when the gold has no topics)

    def to_dict(self) -> dict:
        return {"scores": self.scores, "mbr": self.mbr, "oracle": self.oracle, "best_source": self.best_source,
                "bootstrap": self.bootstrap.to_dict(), "halves": self.halves.to_dict() if self.halves else None}


def score_against(result: MBRResult, references: Mapping[str, Sequence[str]], topics: Mapping[str, str | None],
                  analyser: str = "mecab", analysed: Analysed | None = None) -> GoldReport:
    """Each source's board score, MBR's, the oracle's, and whether MBR beats the best source beyond noise."""
    missing = [f for f in result.fnames if f not in references]
    if missing or len(references) != len(result.fnames):
        raise UserError(
            f"the gold file's rows differ from the predictions' ({len(missing)} predicted fnames have no reference, "
            f"e.g. {', '.join(missing[:3]) or '-'}; {len(references)} gold rows, {len(result.fnames)} predicted): "
            "pass the references of the split the predictions are for"
        )
    analysed = analysed or Analysed(analyser)
    row_scores: dict[str, list[float]] = {label: [] for label in result.labels}
    for fname in result.fnames:
        for label, text in zip(result.labels, result.candidates[fname]):
            row_scores[label].append(analysed.row(fname, text, references[fname]).score)
    per_source = list(row_scores.values())
    mbr_rows = [per_source[k][i] for i, k in enumerate(result.choice)]
    oracle_choice = [max(range(len(per_source)), key=lambda k: (per_source[k][i], -k)) for i in range(len(result.fnames))]
    oracle_rows = [per_source[k][i] for i, k in enumerate(oracle_choice)]
    scores = {label: sum(rows) / len(rows) for label, rows in row_scores.items()}
    best = max(scores, key=scores.get)
    halves = None
    if len({topics.get(f) for f in result.fnames if topics.get(f)}) >= 2:
        halves = topic_halves(dict(zip(result.fnames, mbr_rows)), topics)
    return GoldReport(
        scores=scores, mbr=sum(mbr_rows) / len(mbr_rows), oracle=sum(oracle_rows) / len(oracle_rows), best_source=best,
        row_scores=row_scores, mbr_rows=mbr_rows, oracle_rows=oracle_rows, oracle_choice=oracle_choice,
        bootstrap=paired_bootstrap(dict(zip(result.fnames, row_scores[best])), dict(zip(result.fnames, mbr_rows))),
        halves=halves,
    )
