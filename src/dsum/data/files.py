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
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from dsum.util.atomic import atomic_write_text
from dsum.util.errors import UserError
from dsum.data.text import STANDARD_SPECIAL_TOKENS, TOKEN_PATTERN, Normalizer, text_columns

BOM = b"\xef\xbb\xbf"
SPEAKER_TAG = re.compile(r"#Person\d+#:")
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
    text = _decode(path, _read_bytes(path))
    return _parse(path, text)


def read_examples(path: str | Path, require_summary: bool = False) -> list[Example]:
    """Reads dialogues (and their reference summaries, if any) from a data file."""
    path = Path(path)
    table = read_table(path)
    if len(table) == 0:
        raise UserError(f"{path}: no data rows (a header only, or nothing): the file holds no dialogue to read")
    summary_cols = _summary_columns(table.columns)
    required = ["fname", "dialogue"] + (["summary"] if require_summary and not summary_cols else [])
    _require_columns(path, table, required)
    _require_unique_fnames(path, table["fname"])

    topic_col = next((c for c in ("topic", "topic1") if c in table.columns), None)
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
    """Reads a submission/prediction file (`fname, summary`, optional unnamed index column) into
    {fname: summary}, in file order."""
    path = Path(path)
    table = read_table(path)
    _require_columns(path, table, ["fname", "summary"])
    _require_unique_fnames(path, table["fname"])
    return dict(zip(table["fname"], table["summary"]))


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


def _read_bytes(path: Path) -> bytes:
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
        raise UserError(f"{path}: {_nul_message(raw)}")
    return text


def _nul_message(raw: bytes) -> str:
    return (
        f"holds NUL bytes (first at offset {raw.index(0)}): not a text file, or a damaged one; "
        "re-export it as a UTF-8 CSV or JSON-lines file"
    )


def _one_line(exc: Exception) -> str:
    """An exception's message on one line (pandas' parser errors end in a newline)."""
    return " ".join(str(exc).split())


def _parse(path: Path, text: str) -> pd.DataFrame:
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


def _summary_columns(columns: Iterable[str]) -> list[str]:
    """`summary`, then `summary1..N` in numeric order."""
    numbered = sorted(
        (c for c in columns if _SUMMARY_N.fullmatch(c)), key=lambda c: int(c[len("summary") :])
    )
    return (["summary"] if "summary" in columns else []) + numbered


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


# ---------------------------------------------------------------------------------------------
# Checking


@dataclass
class Finding:
    level: str  # "error" | "warning" | "info"
    file: str
    check: str
    message: str
    count: int = 1


@dataclass
class FileReport:
    path: str
    kind: str  # "train" | "dev" | "test" | "submission" | "jsonl"
    rows: int = 0
    columns: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    tokens: Counter[str] = field(default_factory=Counter)

    @property
    def has_errors(self) -> bool:
        return any(f.level == "error" for f in self.findings)

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "kind": self.kind,
            "rows": self.rows,
            "columns": list(self.columns),
            "errors": sum(f.level == "error" for f in self.findings),
            "warnings": sum(f.level == "warning" for f in self.findings),
            "findings": [asdict(f) for f in self.findings],
            "tokens": dict(self.tokens.most_common()),
        }

    def _add(self, level: str, check: str, message: str, count: int = 1) -> None:
        self.findings.append(Finding(level, self.path, check, message, count))


# Checked in this order: "test_submission.csv" is a submission.
_NAME_HINTS = (
    ("submission", ("submission", "pred")),
    ("test", ("test",)),
    ("dev", ("dev", "valid")),
    ("train", ("train",)),
)

REQUIRED_COLUMNS = {
    "train": ("fname", "dialogue", "summary"),
    "dev": ("fname", "dialogue", "summary"),
    "test": ("fname", "dialogue"),
    "submission": ("fname", "summary"),
    "jsonl": ("fname", "dialogue"),
}


def guess_kind(path: Path, columns: Sequence[str]) -> str:
    """The file's role: from its name when it says (train/dev/test/submission), else its columns."""
    if path.suffix.lower() in (".jsonl", ".json"):
        return "jsonl"
    name = path.stem.lower()
    for kind, words in _NAME_HINTS:
        if any(w in name for w in words):
            return kind
    if "dialogue" not in columns:
        return "submission" if "summary" in columns else "train"
    return "train" if "summary" in columns else "test"


def check_files(paths: Sequence[Path]) -> list[FileReport]:
    """Checks each file and reports what is wrong (errors), odd (warnings) or worth knowing."""
    return [_check_file(Path(p)) for p in paths]


def _check_file(path: Path) -> FileReport:
    raw = _read_bytes(path)  # a missing path is a UserError, not a finding
    report = FileReport(str(path), kind=guess_kind(path, []))  # refined once columns are known
    text = _check_bytes(report, raw)
    if "\x00" in text:
        report._add("error", "nul_bytes", _nul_message(raw), text.count("\x00"))
        return report
    try:
        table = _parse(path, text)
    except UserError as exc:
        report._add("error", "unreadable", str(exc))
        return report

    report.kind = guess_kind(path, list(table.columns))
    report.rows, report.columns = len(table), list(table.columns)
    if len(table) == 0:
        report._add("error", "no_rows", "no data rows (a header only, or nothing): add the rows, or drop the file")
    if "" in table.columns:
        report._add(
            "info",
            "index_column",
            "a leading unnamed index column (as in sample_submission.csv); ignored when reading",
        )

    missing = [c for c in REQUIRED_COLUMNS[report.kind] if c not in table.columns]
    if report.kind == "jsonl" and not _summary_columns(table.columns):
        report._add("info", "no_summary", "no summary or summary1..N column: dialogues only")
    if missing:
        present = ", ".join(map(repr, table.columns))
        report._add(
            "error",
            "missing_columns",
            f"missing column(s) {', '.join(missing)} for a {report.kind} file "
            f"(columns present: {present}): add them, or rename the file if its kind is wrong",
            len(missing),
        )
    if "fname" in table.columns:
        _check_fnames(report, table["fname"])
    fnames = table["fname"] if "fname" in table.columns else pd.Series(map(str, range(len(table))))

    for column in ["dialogue", *_summary_columns(table.columns)]:
        if column in table.columns:
            _check_empty(report, column, table[column], fnames)
    if "dialogue" in table.columns:
        _check_turns(report, table["dialogue"], fnames)
    for column in text_columns(table.columns):
        _check_artefacts(report, column, table[column], fnames)
        report.tokens.update(t for text in table[column] for t in TOKEN_PATTERN.findall(text))
    unknown = {t: n for t, n in report.tokens.most_common() if t not in STANDARD_SPECIAL_TOKENS}
    if unknown:
        listed = ", ".join(f"{t} ×{n}" for t, n in unknown.items())
        report._add(
            "warning",
            "unknown_tokens",
            f"#...# tokens outside the standard 15: {listed} "
            "(a typo, or a token the tokenizer must learn as a special token)",
            sum(unknown.values()),
        )
    return report


def _check_bytes(report: FileReport, raw: bytes) -> str:
    """Encoding checks on the raw bytes (pandas would hide them); returns the decoded text."""
    if raw.startswith(BOM):
        report._add("warning", "bom", "starts with a UTF-8 BOM: re-save as UTF-8 without BOM")
        raw = raw[len(BOM) :]
    crlf = raw.count(b"\r\n")
    if crlf:
        report._add(
            "warning",
            "crlf",
            "Windows line endings (CRLF); lines inside dialogues keep a \\r until the clean-up "
            "strips it: convert with `dos2unix`",
            crlf,
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = sum(1 for _ in re.finditer(rb"[\x80-\xff]+", raw))  # rough count of byte runs
        report._add(
            "error",
            "encoding",
            f"not UTF-8 (first bad byte at offset {exc.start}): re-save as UTF-8, "
            "e.g. `iconv -f cp949 -t utf-8`",
            bad,
        )
        return raw.decode("utf-8", errors="replace")


def _first(fnames: pd.Series, mask: pd.Series) -> str:
    return repr(fnames[mask].iloc[0])


def _check_fnames(report: FileReport, fnames: pd.Series) -> None:
    empty = fnames.str.strip() == ""
    if empty.any():
        row = int(empty.to_numpy().argmax())
        msg = f"empty fname (first at data row {row}): give every row an id"
        report._add("error", "empty_fname", msg, int(empty.sum()))
    dupes = fnames.duplicated(keep=False) & ~empty
    if dupes.any():
        names = fnames[dupes].unique().tolist()
        more = " ..." if len(names) > 5 else ""
        msg = f"duplicate fname(s): {', '.join(names[:5])}{more}: each fname must appear once"
        report._add("error", "duplicate_fname", msg, len(names))


def _check_empty(report: FileReport, column: str, values: pd.Series, fnames: pd.Series) -> None:
    empty = values.str.strip() == ""
    if empty.any():
        msg = f"empty {column} (first: {_first(fnames, empty)}): fill it in or drop the row"
        report._add("error", f"empty_{column}", msg, int(empty.sum()))


def _check_turns(report: FileReport, dialogues: pd.Series, fnames: pd.Series) -> None:
    untagged = blank = 0
    first_untagged = first_blank = None
    for fname, dialogue in zip(fnames, dialogues):
        if not dialogue.strip():
            continue  # reported as empty_dialogue
        for turn in dialogue.split("\n"):
            if not turn.strip():
                blank += 1
                first_blank = first_blank or fname
            elif not SPEAKER_TAG.match(turn):
                untagged += 1
                first_untagged = first_untagged or fname
    if untagged:
        msg = f"turns not starting with a #PersonN#: tag (first in {first_untagged!r})"
        report._add("warning", "untagged_turn", msg, untagged)
    if blank:
        msg = f"empty lines inside dialogues (first in {first_blank!r}); the clean-up drops them"
        report._add("warning", "empty_line", msg, blank)


def _check_artefacts(report: FileReport, column: str, values: pd.Series, fnames: pd.Series) -> None:
    for check, pattern, what in (
        ("literal_newline", r"\\n", 'a literal "\\n" (backslash + n) instead of a line break'),
        ("html_br", r"(?i)<br\s*/?>", "an HTML <br> tag instead of a line break"),
    ):
        hit = values.str.contains(pattern, regex=True)
        if hit.any():
            msg = f"{column} holds {what} (first: {_first(fnames, hit)}); the clean-up fixes it"
            report._add("warning", f"{check}_{column}", msg, int(hit.sum()))
    spaces = values.str.contains(r"[^\S\n]{2,}|[^\S\n ]|[^\S\n]$|[^\S\n]\n|\n[^\S\n]|^[^\S\n]")
    spaces &= values.str.strip() != ""  # blank cells are reported as empty
    if spaces.any():
        msg = (
            f"{column} has runs of spaces, tabs, or spaces at a line's ends "
            f"(first: {_first(fnames, spaces)}); the clean-up normalises them"
        )
        report._add("info", f"spacing_{column}", msg, int(spaces.sum()))
