"""Reading and checking data files: the library's only way in for CSV and JSON-lines data.

Formats: the competition CSVs (`fname, dialogue, summary, topic`; test without summary/topic;
sample_submission `,fname,summary` with an unnamed index column) and DialogSum JSON lines
(`summary` or `summary1..N` with `topic1..N`). Every cell is read as a string, empty cells as "".
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from dsum.util.atomic import atomic_write_text
from dsum.util.errors import UserError
from dsum.data.text import Normalizer, text_columns

if TYPE_CHECKING:
    from dsum.metric.rouge import Score

BOM = b"\xef\xbb\xbf"
_SUMMARY_N = re.compile(r"summary(\d+)")


@dataclass(frozen=True)
class Example:
    fname: str
    dialogue: str
    summaries: tuple[str, ...]  # () for test files; one for `summary`; N for `summary1..N`
    topic: str | None = None


# ---------------------------------------------------------------------------------------------
# Reading


def read_table(path: str | Path) -> pd.DataFrame:
    """Reads a .csv or .jsonl/.json file; all columns as str. A leading index column with an empty
    header (sample_submission.csv) is kept under the name ""."""
    path = Path(path)
    text = _decode(path, read_bytes(path))
    return parse_text(path, text)


def read_examples(path: str | Path, require_summary: bool = False) -> list[Example]:
    """Reads dialogues (and their reference summaries, if any) from a data file."""
    path = Path(path)
    table = read_table(path)
    if len(table) == 0:
        raise UserError(f"{path}: no data rows (a header only, or nothing): the file holds no dialogue to read")
    summary_cols = summary_columns(table.columns)
    required = ["fname", "dialogue"] + (["summary"] if require_summary and not summary_cols else [])
    _require_columns(path, table, required)
    _require_unique_fnames(path, table["fname"])

    topic_col = topic_column(table.columns)
    examples = []
    for row in table.to_dict("records"):
        summaries = tuple(row[c] for c in summary_cols if row[c].strip())
        if require_summary and not summaries:
            raise UserError(
                f"{path}: {row['fname']!r} has an empty summary: fill it in or drop the row "
                "(`dsum data check` lists every problem in the file)"
            )
        topic = row[topic_col] if topic_col and row[topic_col] else None
        examples.append(Example(row["fname"], row["dialogue"], summaries, topic))
    return examples


def read_predictions(path: str | Path) -> dict[str, str]:
    """Reads a submission (`fname, summary`, optional unnamed index column) or a dev predictions file
    (`fname, prediction, reference...`, as `dsum predict --split dev` and training write it) into
    {fname: summary}, in file order."""
    path = Path(path)
    table = read_table(path)
    column = "prediction" if "prediction" in table.columns and "summary" not in table.columns else "summary"
    _require_columns(path, table, ["fname", column])
    _require_unique_fnames(path, table["fname"])
    return dict(zip(table["fname"], table[column]))


def reference_map(examples: Iterable[Example]) -> dict[str, tuple[str, ...]]:
    return {ex.fname: ex.summaries for ex in examples}


def file_sha256(path: str | Path) -> str:
    path = Path(path)
    _require_file(path)
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _require_file(path: Path) -> None:
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise UserError(f"{path} {what}: check the path (relative paths start from {Path.cwd()})")


def read_bytes(path: Path) -> bytes:
    _require_file(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror}): check its permissions") from None


def _decode(path: Path, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8-sig")  # drops a BOM if there is one
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: not UTF-8 (bad byte at offset {exc.start}): re-save the file as UTF-8 "
            "(e.g. `iconv -f cp949 -t utf-8`)"
        ) from None
    if "\x00" in text:
        raise UserError(f"{path}: {nul_message(raw)}")
    return text


def nul_message(raw: bytes) -> str:
    return (
        f"holds NUL bytes (first at offset {raw.index(0)}): not a text file, or a damaged one; "
        "re-export it as a UTF-8 CSV or JSON-lines file"
    )


def _one_line(exc: Exception) -> str:
    """An exception's message on one line (pandas' parser errors end in a newline)."""
    return " ".join(str(exc).split())


def parse_text(path: Path, text: str) -> pd.DataFrame:
    if _format_of(path) == "csv":
        return _parse_csv(path, text)
    return _parse_json(path, text)


def _format_of(path: Path) -> str:
    """"csv" or "jsonl" (.jsonl, or .json holding one array), from the file name."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    raise UserError(f"{path}: unsupported file type {suffix!r}: use a .csv or .jsonl file")


def _parse_csv(path: Path, text: str) -> pd.DataFrame:
    if not text.strip():
        raise UserError(f"{path}: the file is empty: it needs a header row such as fname,dialogue")
    try:
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        # pandas names an empty header "Unnamed: 0"; read the real header to keep it as "".
        # newline="": a lone \r ends a line for the csv module as it does for pandas.
        header = next(csv.reader(io.StringIO(text, newline="")), [])
    except (pd.errors.ParserError, ValueError, csv.Error) as exc:
        raise UserError(f"{path}: not a valid CSV file ({_one_line(exc)}): check its quoting") from None
    if header and header[0] == "":
        table = table.rename(columns={table.columns[0]: ""})
    return table


def _parse_json(path: Path, text: str) -> pd.DataFrame:
    try:
        if text.lstrip().startswith("["):  # a .json file holding one array of objects
            rows = json.loads(text)
        else:
            # split("\n"), not splitlines(): a JSON string may hold a raw U+2028.
            rows = [json.loads(line) for line in text.split("\n") if line.strip()]
    except (json.JSONDecodeError, RecursionError) as exc:
        raise UserError(
            f"{path}: not valid JSON lines ({_one_line(exc)}): each line must be one JSON object"
        ) from None
    if not all(isinstance(row, dict) for row in rows):
        raise UserError(f"{path}: every JSON line must be an object like {{\"fname\": ...}}")
    table = pd.DataFrame(rows, dtype=object)
    return table.map(lambda v: "" if v is None or v != v else str(v)).astype(str)


def summary_columns(columns: Iterable[str]) -> list[str]:
    """`summary`, then `summary1..N` in numeric order."""
    numbered = sorted(
        (c for c in columns if _SUMMARY_N.fullmatch(c)), key=lambda c: int(c[len("summary") :])
    )
    return (["summary"] if "summary" in columns else []) + numbered


SPLITS = ("dev", "test")  # the splits a verb generates summaries for (--split)


def split_file(data, split: str) -> Path:
    """The file of a split of a config's data section (DataConfig): data.dev or data.test; another name is a UserError."""
    if split not in SPLITS:
        raise UserError(f"--split must be dev or test, not {split!r}")
    return data.dev if split == "dev" else data.test


def topic_column(columns: Iterable[str]) -> str | None:
    """The column that holds the topics: `topic`, else `topic1` (files with several references); None without one."""
    columns = list(columns)
    return next((c for c in ("topic", "topic1") if c in columns), None)


def _require_columns(path: Path, table: pd.DataFrame, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in table.columns]
    if missing:
        present = ", ".join(repr(c) for c in table.columns) or "none"
        raise UserError(
            f"{path}: missing column(s) {', '.join(missing)} (columns present: {present}): "
            f"the file needs the columns {', '.join(required)}"
        )


def _require_unique_fnames(path: Path, fnames: pd.Series) -> None:
    empty = int((fnames.str.strip() == "").sum())
    if empty:
        raise UserError(f"{path}: {empty} row(s) have an empty fname: give every row an id")
    dupes = fnames[fnames.duplicated()].unique().tolist()
    if dupes:
        raise UserError(
            f"{path}: duplicate fname(s) {', '.join(dupes[:5])}: each fname must appear once"
        )


def write_dev_predictions(path: Path, examples: list[Example], predictions: dict[str, str], score: Score) -> None:
    """The dev predictions file: fname, dialogue, prediction, reference(s) and per-row scores (what to read when
    looking for errors; read_predictions reads it back)."""
    per_row = {row.fname: row for row in score.per_row}
    records = []
    for ex in examples:
        row = per_row[ex.fname]
        record = {"fname": ex.fname, "dialogue": ex.dialogue, "prediction": predictions[ex.fname]}
        record.update({f"reference{i + 1}" if len(ex.summaries) > 1 else "reference": s for i, s in enumerate(ex.summaries)})
        record.update(score=row.score, rouge1=row.rouge1, rouge2=row.rouge2, rougeL=row.rougeL)
        records.append(record)
    atomic_write_text(path, pd.DataFrame(records).to_csv(index=False))


# ---------------------------------------------------------------------------------------------
# Cleaning a file (the rules themselves live in dsum.data.text)


def preprocess_file(src: str | Path, dst: str | Path, normalizer: Normalizer) -> dict[str, int]:
    """Cleans the dialogue and summary columns of `src` into `dst` (same format, same columns and
    row order); returns, per rule, how many rows it changed. `dst` may be `src`."""
    src, dst = Path(src), Path(dst)
    fmt = _format_of(src)
    if _format_of(dst) != fmt:
        raise UserError(
            f"{dst}: the cleaned file must have the same format as {src} ({fmt}): "
            f"give it a {'.csv' if fmt == 'csv' else '.jsonl'} name"
        )
    table = read_table(src)
    counts = {rule.name: 0 for rule in normalizer.rules}
    changed_by_row: list[set[str]] = [set() for _ in range(len(table))]
    for column in text_columns(table.columns):
        cleaned = []
        for i, text in enumerate(table[column]):
            out, changed = normalizer.clean_with_rules(text)
            cleaned.append(out)
            changed_by_row[i] |= changed
        table[column] = cleaned
    for changed in changed_by_row:
        for name in changed:
            counts[name] += 1

    if fmt == "csv":
        body = table.to_csv(index=False, lineterminator="\n")
    else:
        body = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in table.to_dict("records"))
    atomic_write_text(dst, body)
    return counts
