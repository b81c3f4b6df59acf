"""Checking data files (`dsum data check`): what is wrong (errors), odd (warnings) or worth knowing.

Reading goes through dsum.data.files, so a check and a read agree on what a file holds.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from dsum.data.files import BOM, nul_message, parse_text, read_bytes, summary_columns
from dsum.data.text import STANDARD_SPECIAL_TOKENS, TOKEN_PATTERN, text_columns
from dsum.util.errors import UserError

SPEAKER_TAG = re.compile(r"#Person\d+#:")

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
    raw = read_bytes(path)  # a missing path is a UserError, not a finding
    report = FileReport(str(path), kind=guess_kind(path, []))  # refined once columns are known
    text = _check_bytes(report, raw)
    if "\x00" in text:
        report._add("error", "nul_bytes", nul_message(raw), text.count("\x00"))
        return report
    try:
        table = parse_text(path, text)
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
    if report.kind == "jsonl" and not summary_columns(table.columns):
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

    for column in ["dialogue", *summary_columns(table.columns)]:
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
