"""`dsum ensemble mbr`: read candidate files, choose per row (dsum.metric.mbr), write the choice and its record.

Inputs ("sources"):

* a prediction file in submission layout (`fname,summary`, optionally the unnamed index column
  first), or a dev predictions file (`fname,...,prediction,...`): one candidate per row,
  labelled by the file's stem (by its path when two files share a stem);
* a candidates file (`dsum predict --candidates K --samples S`): CSV `fname,rank,kind,summary`,
  K + S rows per fname (beams best first, rank 1 the best, then samples): one source per rank,
  labelled `<stem>#<rank>`, each with the file's weight (`kind` is for people; MBR ignores it).

Ties go to the first source: the order of PRED on the command line, and rank order inside a
candidates file. Every source must hold the same fnames. With references (`gold`), each source's
board score, the MBR score, the oracle (the best candidate of each row, an upper bound) and a paired
bootstrap of MBR against the best single source tell whether the choice is a gain or noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dsum.metric.mbr import GoldReport, MBRResult, Source, check_weights, mbr, require_same_fnames, score_against
from dsum.metric.rouge import Analysed
from dsum.util.errors import UserError

CANDIDATE_COLUMNS = ("fname", "rank", "summary")


# ---------------------------------------------------------------------------------------------
# Reading sources


def read_sources(paths: Sequence[Path], weights: Sequence[float] | None = None) -> list[Source]:
    """The sources of PRED files, in the order given; `weights`: one per file (default 1 each)."""
    from dsum.data.files import read_predictions, read_table

    if not paths:
        raise UserError("no prediction files: give at least two PRED files (or one candidates file)")
    weights = check_weights(weights, len(paths), "--source-weights")
    stems = [Path(p).stem for p in paths]
    sources: list[Source] = []
    for i, path in enumerate(paths):
        # Two files with the same stem (runs/a/dev_predict.csv, runs/b/dev_predict.csv): use the path.
        label = stems[i] if stems.count(stems[i]) == 1 else str(path)
        weight = 1.0 if weights is None else weights[i]
        table = read_table(path)
        if len(table) == 0:
            raise UserError(f"{path}: no rows (a header only): give a file with one prediction (or K candidates) per dialogue")
        if "rank" in table.columns:
            sources += _candidate_sources(Path(path), table, label, weight)
        else:
            sources.append(Source(label, read_predictions(path), weight))
    require_same_fnames(sources)
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


def parse_weights(text: str | None, option: str) -> list[float] | None:
    """'1,2,1' → [1.0, 2.0, 1.0] (the CLI's spelling); None stays None. How many and which values: check_weights."""
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"{option} {text!r}: give comma-separated numbers, e.g. {option} 1,2,1") from None


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
    """`dsum ensemble mbr`: read the sources, choose per row, write OUT (+ OUT's `_rows.csv`, and with gold `_record.md`).

    Every input is checked before anything is written; a refusal writes nothing.
    """
    import pandas as pd

    from dsum.data.submission import submission_layout, write_submission
    from dsum.util.atomic import atomic_write_text

    out = Path(out)
    rows_path, record_path = out.with_name(f"{out.stem}_rows.csv"), out.with_name(f"{out.stem}_record.md")
    for path in (out, rows_path, *([record_path] if gold is not None else [])):
        if path.is_dir():
            raise UserError(f"--out {out}: {path} is a folder; name the output file, e.g. --out {path / 'mbr.csv'}")
    metric_weights = check_weights(metric_weights, 3, "--weights") or [1.0, 1.0, 1.0]
    sources = read_sources(paths, source_weights)
    submission_layout(sample)  # a bad sample is refused before the choice is computed
    analysed = Analysed(analyser)
    result = mbr(sources, metric_weights, analyser, analysed)
    report = None
    if gold is not None:
        from dsum.data.files import read_examples, reference_map

        examples = read_examples(gold, require_summary=True)
        report = score_against(result, reference_map(examples), {e.fname: e.topic for e in examples}, analyser, analysed)

    records = []
    for i, fname in enumerate(result.fnames):
        record = {"fname": fname, "source": result.labels[result.choice[i]], "utility": result.utility[i]}
        if report is not None:
            record.update(score=report.mbr_rows[i], oracle=report.oracle_rows[i], oracle_source=result.labels[report.oracle_choice[i]])
            record.update({f"score:{label}": rows[i] for label, rows in report.row_scores.items()})
        records.append(record)
    write_submission(out, result.summaries, result.fnames, sample)
    atomic_write_text(rows_path, pd.DataFrame(records).to_csv(index=False))
    if report is None:
        return MBRFiles(out, rows_path, None, result, None)
    atomic_write_text(record_path, render_record(result, report, paths, metric_weights, sources))
    return MBRFiles(out, rows_path, record_path, result, report)


def render_record(result: MBRResult, report: GoldReport, paths: Sequence[Path], metric_weights: Sequence[float],
                  sources: Sequence[Source]) -> str:
    from dsum.util.markdown import markdown_table as table

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
