"""Minimum-Bayes-risk (MBR) choice among candidate summaries, scored with the board's Korean ROUGE.

Per row, each candidate c gets the expected board metric against the other candidates,

    utility(c) = Σ_{c' ≠ c} w(c') · metric(c, c'),

with metric = (w1·R1 + w2·R2 + wL·RL) / (w1 + w2 + wL) × 100, the F1s computed exactly as
dsum.metric.rouge computes them for the board (c as the prediction, c' as the reference), and w the
weight of the source c' comes from (default 1). The candidate with the highest utility is chosen:
the one the others agree with most. Ties go to the first source in the order given (the order of
PRED on the command line, and rank order inside a candidates file). Identical candidates from two
sources both count: agreement is the point.

Each distinct text is analysed into morphemes once (pltrdy-style "prepared" once), and pairs are
scored on those; identical texts within a row are scored once.

Inputs ("sources"):

* a prediction file in submission layout (`fname,summary`, optionally the unnamed index column
  first), or a run's dev_predictions.csv (`fname,...,prediction,...`): one candidate per row,
  labelled by the file's stem (by its path when two files share a stem);
* a candidates file (`dsum predict --candidates K --samples S`): CSV `fname,rank,kind,summary`,
  K + S rows per fname (beams best first, rank 1 the best, then samples): one source per rank,
  labelled `<stem>#<rank>`, each with the file's weight (`kind` is for people; MBR ignores it).

Every source must hold the same fnames. With references (`gold`), each source's board score, the
MBR score, the oracle (the best candidate of each row, an upper bound) and a paired bootstrap of
MBR against the best single source tell whether the choice is a gain or noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dsum.metric.bootstrap import Bootstrap, Halves, paired_bootstrap, topic_halves
from dsum.util.errors import UserError
from dsum.metric.rouge import _prepare, _Prepared, _rouge_prepared, get_analyser, strip_special

CANDIDATE_COLUMNS = ("fname", "rank", "summary")


@dataclass(frozen=True)
class Source:
    """One candidate per fname, from one prediction file (or one rank of a candidates file)."""

    label: str
    texts: dict[str, str]  # fname → summary
    weight: float = 1.0


# ---------------------------------------------------------------------------------------------
# Reading sources


def read_sources(paths: Sequence[Path], weights: Sequence[float] | None = None) -> list[Source]:
    """The sources of PRED files, in the order given; `weights`: one per file (default 1 each)."""
    from dsum.data.files import read_predictions, read_table

    if not paths:
        raise UserError("no prediction files: give at least two PRED files (or one candidates file)")
    if weights is not None and len(weights) != len(paths):
        raise UserError(f"--source-weights has {len(weights)} values for {len(paths)} prediction files: give one per file")
    stems = [Path(p).stem for p in paths]
    sources: list[Source] = []
    for i, path in enumerate(paths):
        # Two files with the same stem (runs/a/dev_submission.csv, runs/b/dev_submission.csv): use the path.
        label = stems[i] if stems.count(stems[i]) == 1 else str(path)
        weight = 1.0 if weights is None else float(weights[i])
        table = read_table(path)
        if "rank" in table.columns:
            sources += _candidate_sources(Path(path), table, label, weight)
        elif "prediction" in table.columns and "summary" not in table.columns:  # a run's dev_predictions.csv
            sources.append(Source(label, dict(zip(table["fname"], table["prediction"])), weight))
        else:
            sources.append(Source(label, read_predictions(path), weight))
    _require_same_fnames(sources)
    if len(sources) < 2:
        raise UserError(f"{paths[0]} holds one candidate per row: MBR needs at least two (more files, or --candidates K)")
    return sources


def _candidate_sources(path: Path, table, label: str, weight: float) -> list[Source]:
    missing = [c for c in CANDIDATE_COLUMNS if c not in table.columns]
    if missing:
        raise UserError(f"{path}: a candidates file needs the columns {', '.join(CANDIDATE_COLUMNS)}; missing {', '.join(missing)}")
    by_rank: dict[str, dict[str, str]] = {}
    for fname, rank, summary in zip(table["fname"], table["rank"], table["summary"]):
        texts = by_rank.setdefault(rank, {})
        if fname in texts:
            raise UserError(f"{path}: fname {fname!r} has rank {rank} twice; write each rank once per fname")
        texts[fname] = summary
    ranks = sorted(by_rank, key=lambda r: (int(r) if r.isdigit() else 10**9, r))
    return [Source(f"{label}#{rank}", by_rank[rank], weight) for rank in ranks]


def _require_same_fnames(sources: list[Source]) -> None:
    first = sources[0]
    for source in sources[1:]:
        missing = [f for f in first.texts if f not in source.texts]
        extra = [f for f in source.texts if f not in first.texts]
        if missing or extra:
            shown = ", ".join((missing or extra)[:3])
            raise UserError(
                f"{source.label} and {first.label} hold different rows ({len(missing)} missing, {len(extra)} extra: "
                f"{shown}); every source must predict the same fnames (same split, every rank of every row)"
            )


def parse_weights(text: str | None, count: int | None, option: str) -> list[float] | None:
    """'1,2,1' → [1.0, 2.0, 1.0]; None stays None. Each must be a number ≥ 0, not all 0."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"{option} {text!r}: give comma-separated numbers, e.g. {option} 1,2,1") from None
    if count is not None and len(values) != count:
        raise UserError(f"{option} {text!r} has {len(values)} values; give {count}, e.g. {option} {','.join(['1'] * count)}")
    if any(v < 0 for v in values) or not any(values):
        raise UserError(f"{option} {text!r}: weights must be ≥ 0 and not all 0")
    return values


# ---------------------------------------------------------------------------------------------
# MBR


class _Analysed:
    """Each distinct text → its prepared morphemes, computed once (one vocabulary for all)."""

    def __init__(self, analyser: str):
        self.morphs = get_analyser(analyser)
        self.vocab: dict[str, int] = {}
        self.cache: dict[str, _Prepared | None] = {}

    def __call__(self, text: str) -> _Prepared | None:
        prepared = self.cache.get(text, False)
        if prepared is False:
            prepared = self.cache[text] = _prepare(" ".join(self.morphs(text)), self.vocab)
        return prepared


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
    sources: Sequence[Source],
    metric_weights: Sequence[float] = (1.0, 1.0, 1.0),
    analyser: str = "mecab",
    analysed: _Analysed | None = None,
) -> MBRResult:
    """Per row, the candidate with the highest expected metric against the others (see the module docstring)."""
    analysed = analysed or _Analysed(analyser)
    source_weights = [s.weight for s in sources]
    fnames = list(sources[0].texts)
    choice, utility, summaries, candidates = [], [], {}, {}
    for fname in fnames:
        # The board strips the model's special strings from predictions; candidates are predictions.
        texts = [strip_special(s.texts[fname]) for s in sources]
        unique = list(dict.fromkeys(texts))
        slot = [unique.index(t) for t in texts]
        prepared = [analysed(t) for t in unique]
        # metric(hyp=unique i, ref=unique j), each distinct pair once.
        pair = [[combine(_rouge_prepared(h, r), metric_weights) for r in prepared] for h in prepared]
        best, best_utility = 0, float("-inf")
        for k in range(len(texts)):
            u = sum(source_weights[j] * pair[slot[k]][slot[j]] for j in range(len(texts)) if j != k)
            if u > best_utility:  # strict: ties keep the first source
                best, best_utility = k, u
        choice.append(best)
        utility.append(best_utility)
        summaries[fname] = sources[best].texts[fname]
        candidates[fname] = texts
    return MBRResult([s.label for s in sources], fnames, choice, utility, summaries, candidates)


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
                  analyser: str = "mecab", analysed: _Analysed | None = None) -> GoldReport:
    """Each source's board score, MBR's, the oracle's, and whether MBR beats the best source beyond noise."""
    missing = [f for f in result.fnames if f not in references]
    if missing or len(references) != len(result.fnames):
        raise UserError(
            f"the gold file's rows differ from the predictions' ({len(missing)} predicted fnames have no reference, "
            f"e.g. {', '.join(missing[:3]) or '-'}; {len(references)} gold rows, {len(result.fnames)} predicted): "
            "pass the references of the split the predictions are for"
        )
    analysed = analysed or _Analysed(analyser)
    row_scores: dict[str, list[float]] = {label: [] for label in result.labels}
    for fname in result.fnames:
        refs = [analysed(r) for r in references[fname]]
        for label, text in zip(result.labels, result.candidates[fname]):
            hyp = analysed(text)
            totals = [0.0, 0.0, 0.0]
            for ref in refs:
                for k, value in enumerate(_rouge_prepared(hyp, ref)):
                    totals[k] += value
            row_scores[label].append(sum(totals) / len(refs) / 3 * 100)
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


# ---------------------------------------------------------------------------------------------
# The verb


@dataclass
class MBRFiles:
    out: Path  # the chosen summaries, submission layout
    rows: Path  # per row: chosen source, utility (and with gold: scores, oracle)
    record: Path | None  # with gold: the numbers as markdown
    result: MBRResult
    gold: GoldReport | None


def run_mbr(
    paths: Sequence[Path], out: Path, gold: Path | None = None, metric_weights: Sequence[float] | None = None,
    source_weights: Sequence[float] | None = None, analyser: str = "mecab", sample: Path | None = None,
) -> MBRFiles:
    """`dsum ensemble mbr`: read the sources, choose per row, write OUT (+ OUT's `_rows.csv`, and with gold `_record.md`)."""
    import pandas as pd

    from dsum.util.atomic import atomic_write_text
    from dsum.data.submission import write_submission

    metric_weights = list(metric_weights or (1.0, 1.0, 1.0))
    sources = read_sources(paths, source_weights)
    analysed = _Analysed(analyser)
    result = mbr(sources, metric_weights, analyser, analysed)
    report = None
    if gold is not None:
        from dsum.data.files import read_examples, reference_map

        examples = read_examples(gold, require_summary=True)
        report = score_against(result, reference_map(examples), {e.fname: e.topic for e in examples}, analyser, analysed)

    out = Path(out)
    write_submission(out, result.summaries, result.fnames, sample)
    records = []
    for i, fname in enumerate(result.fnames):
        record = {"fname": fname, "source": result.labels[result.choice[i]], "utility": result.utility[i]}
        if report is not None:
            record.update(score=report.mbr_rows[i], oracle=report.oracle_rows[i], oracle_source=result.labels[report.oracle_choice[i]])
            record.update({f"score:{label}": rows[i] for label, rows in report.row_scores.items()})
        records.append(record)
    rows_path = out.with_name(f"{out.stem}_rows.csv")
    atomic_write_text(rows_path, pd.DataFrame(records).to_csv(index=False))
    record_path = None
    if report is not None:
        record_path = out.with_name(f"{out.stem}_record.md")
        atomic_write_text(record_path, render_record(result, report, paths, metric_weights, sources))
    return MBRFiles(out, rows_path, record_path, result, report)


def render_record(result: MBRResult, report: GoldReport, paths: Sequence[Path], metric_weights: Sequence[float],
                  sources: Sequence[Source]) -> str:
    from dsum.runs.record import table

    wins = result.wins()
    rows = [(label, f"{s.weight:g}", f"{report.scores[label]:.2f}", wins[label]) for label, s in zip(result.labels, sources)]
    lines = [
        f"# MBR over {len(result.labels)} candidates per row, {len(result.fnames)} rows",
        "",
        f"- **Inputs:** {', '.join(f'`{p}`' for p in paths)}",
        f"- **Metric weights (R1, R2, RL):** {', '.join(f'{w:g}' for w in metric_weights)}",
        "",
        "## Scores (dev)",
        "",
        table(("source", "weight", "score", "rows won by MBR"), rows),
        "",
        table(("", "score"), [("MBR", f"{report.mbr:.2f}"), ("oracle (best candidate per row)", f"{report.oracle:.2f}"),
                              (f"best source ({report.best_source})", f"{report.scores[report.best_source]:.2f}")]),
        "",
        "## Gain or noise",
        "",
        f"- paired bootstrap over dev rows: {report.bootstrap.line(report.best_source, 'MBR')}",
        f"- MBR {report.halves.line()}" if report.halves else "- topic halves: the gold file has no topics",
        "",
    ]
    return "\n".join(lines)
