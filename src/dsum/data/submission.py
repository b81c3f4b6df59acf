"""Write competition submissions and check them before upload.

The official sample_submission.csv header is ``,fname,summary``: an unnamed index column (values
0..n-1) first. Teams report that plain ``fname,summary`` is accepted too; we write whatever layout
the sample has, and the official one when no sample is given.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from dsum.util.atomic import atomic_write_text
from dsum.util.errors import UserError


# Special tokens of KoBART-like tokenizers that leak into decoded text when generation output is
# decoded without skip_special_tokens (the organiser baseline strips them by hand).
LEFTOVER_TOKENS = ("<s>", "</s>", "<pad>", "<unk>", "<usr>")

OFFICIAL_HEADER = ["", "fname", "summary"]
# Layouts accepted when no sample is given to compare with.
ACCEPTED_HEADERS = (OFFICIAL_HEADER, ["fname", "summary"])

_BOM = b"\xef\xbb\xbf"
_NEWLINES = re.compile(r"[\r\n\u2028\u2029\x85]+")
_SHOW = 5  # how many example ids a message lists


def _examples(items: Sequence[str]) -> str:
    """'a, b, c' for the first few items, with '...' when there are more."""
    shown = ", ".join(repr(x) if x == "" or x != x.strip() else x for x in items[:_SHOW])
    return shown + (", ..." if len(items) > _SHOW else "")


def _header_of(text: str) -> list[str]:
    """The header row as written (pandas would rename an empty name to 'Unnamed: 0')."""
    return next(csv.reader(io.StringIO(text)), [])


def _read_sample_header(sample: Path) -> list[str]:
    """The sample's header as written, read through the one data reader (csv or jsonl, one-line refusals)."""
    from dsum.data.files import read_table

    return list(read_table(sample).columns)


def submission_layout(sample: Path | None) -> list[str]:
    """Header to write: the sample's when it is a layout we understand, else the official one.

    Reads and checks the sample (a UserError when it is missing or odd): call it before long work.
    """
    if sample is None:
        return list(OFFICIAL_HEADER)
    header = _read_sample_header(sample)
    named = [c for c in header if c != ""]
    index_ok = header.count("") == 0 or (header.count("") == 1 and header[0] == "")
    if sorted(named) != ["fname", "summary"] or not index_ok:
        raise UserError(
            f"the sample submission {sample} has header {','.join(header)!r}, expected ',fname,summary' "
            "or 'fname,summary'; pass the official sample_submission.csv or leave the sample out"
        )
    return header


def write_submission(
    path: Path,
    predictions: Mapping[str, str],
    test_fnames: Sequence[str],
    sample: Path | None = None,
) -> Path:
    """Write one row per test fname, in test order, atomically; return the path written.

    Raises UserError (and writes nothing) when a test fname has no prediction.
    """
    path = Path(path)
    missing = [f for f in test_fnames if predictions.get(f) is None]
    if missing:
        raise UserError(
            f"no prediction for {len(missing)} of {len(test_fnames)} test dialogues ({_examples(missing)}); "
            "predict every dialogue of the test file before writing the submission"
        )
    header = submission_layout(sample)

    # A summary must be one line: some graders read the file line by line.
    summaries = [_NEWLINES.sub(" ", str(predictions[f])) for f in test_fnames]
    frame = pd.DataFrame({"fname": list(test_fnames), "summary": summaries})
    frame = frame[[c for c in header if c != ""]]
    with_index = header[0] == ""  # pandas writes an empty header cell for an unnamed index

    atomic_write_text(path, frame.to_csv(index=with_index, lineterminator="\n"))
    return path


def read_test_fnames(test: Path) -> list[str]:
    """The fnames of a test file (csv or jsonl), in file order, read through the one data reader."""
    from dsum.data.files import read_table

    frame = read_table(test)
    if "fname" not in frame.columns:
        raise UserError(f"the test file {test} has no 'fname' column; pass the competition's test.csv")
    return frame["fname"].tolist()


def write_checked_submission(
    out: Path, predictions: Mapping[str, str], test: Path | Sequence[str], sample: Path | None = None
) -> Path:
    """Write `out` in the sample's layout (write_submission), then check it (check_submission).

    `test`: the test file, or the fnames the submission must hold in order (e.g. the first --limit
    rows). Any problem is a UserError listing them all. Returns `out`.
    The file is written under a temporary name and renamed to `out` once it passes: a file that fails is
    kept as `<stem>.invalid<suffix>` (named in the error), never under the name of a submission.
    """
    out = Path(out)
    fnames = _test_fnames(test)
    unchecked, invalid = out.with_name(f"{out.stem}.unchecked{out.suffix}"), invalid_submission_path(out)
    write_submission(unchecked, predictions, fnames, sample)
    problems = check_submission(unchecked, fnames, sample)
    if problems:
        os.replace(unchecked, invalid)
        raise UserError(f"the submission failed its check, kept as {invalid} (not {out.name}): " + "; ".join(problems))
    os.replace(unchecked, out)
    invalid.unlink(missing_ok=True)  # an earlier failed attempt's file
    return out


def invalid_submission_path(out: Path) -> Path:
    """Where write_checked_submission keeps a file that failed its check: `submission.invalid.csv`."""
    return Path(out).with_name(f"{Path(out).stem}.invalid{Path(out).suffix}")


def _test_fnames(test: Path | Sequence[str]) -> list[str]:
    return read_test_fnames(Path(test)) if isinstance(test, (str, os.PathLike)) else list(test)


def check_submission(sub: Path, test: Path | Sequence[str], sample: Path | None = None) -> list[str]:
    """Every problem found in submission `sub`, one line each (problem; fix). [] means OK.

    `test`: the test file, or the list of fnames the submission must hold in order. Raises
    UserError when `test` or `sample` cannot be read: those are the references, not the file
    under check.
    """
    sub = Path(sub)
    test_fnames = _test_fnames(test)
    expected_header = _read_sample_header(sample) if sample is not None else None

    if not sub.is_file():
        return [f"submission file not found: {sub}; write it first (or fix the path)"]
    raw = sub.read_bytes()

    problems: list[str] = []
    if raw.startswith(_BOM):
        problems.append("the file starts with a UTF-8 byte order mark (BOM); save it as UTF-8 without BOM")
        raw = raw[len(_BOM) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        problems.append(
            f"the file is not valid UTF-8 (byte 0x{raw[e.start]:02x} on line {line}; CP949/EUC-KR?); "
            "save it as UTF-8"
        )
        text = raw.decode("utf-8", errors="replace")  # go on checking the rest

    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        problems.append(f"the file is not a readable CSV ({str(e).strip()}); write it with a CSV writer")
        return problems
    header = _header_of(text)
    # pandas silently turns a surplus first field into the index (and pads short rows), so a body
    # written with an index under an index-less header would otherwise look fine.
    reader = csv.reader(io.StringIO(text))
    ragged = [(reader.line_num, len(row)) for row in reader if row and len(row) != len(header)]
    if ragged:
        n, w = ragged[0]
        problems.append(
            f"{len(ragged)} rows do not have the header's {len(header)} fields (first: line {n} has {w}); "
            "write every row with the same columns as the header"
        )

    missing_cols = [c for c in ("fname", "summary") if c not in header]
    for col in missing_cols:
        problems.append(
            f"no '{col}' column (header is {','.join(header)!r}); the header must be ',fname,summary'"
        )
    if not missing_cols:
        if expected_header is not None and header != expected_header:
            problems.append(
                f"the columns {','.join(header)!r} differ from the sample's {','.join(expected_header)!r}; "
                "write the header exactly as in the sample"
            )
        elif expected_header is None and header not in ACCEPTED_HEADERS:
            problems.append(
                f"the columns {','.join(header)!r} are not an accepted layout; "
                "write ',fname,summary' (official) or 'fname,summary'"
            )

    if "fname" in frame.columns:
        fnames = frame["fname"].tolist()
        problems += _id_problems(fnames, test_fnames)
    else:
        fnames = [str(i) for i in range(len(frame))]  # so summary messages can still name rows
    if "summary" in frame.columns:
        problems += _summary_problems(fnames, frame["summary"].tolist())
    return problems


def _id_problems(fnames: list[str], test_fnames: Sequence[str]) -> list[str]:
    """Missing, extra, repeated and out-of-order ids of a submission against the test file's."""
    problems = []
    present, expected = set(fnames), set(test_fnames)
    missing = [f for f in test_fnames if f not in present]
    extra = [f for f in dict.fromkeys(fnames) if f not in expected]
    dupes = [f for f, n in Counter(fnames).items() if n > 1]
    if missing:
        problems.append(f"{len(missing)} test ids are missing ({_examples(missing)}); write one row per test dialogue")
    if extra:
        problems.append(f"{len(extra)} ids are not in the test file ({_examples(extra)}); remove those rows")
    if dupes:
        problems.append(f"{len(dupes)} ids appear more than once ({_examples(dupes)}); keep one row per id")
    # Order of the ids both files share, so one missing row does not also count as disorder.
    ours = [f for f in dict.fromkeys(fnames) if f in expected]
    theirs = [f for f in dict.fromkeys(test_fnames) if f in present]
    if ours != theirs:
        at = next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)
        problems.append(
            f"rows are not in the test file's order (first difference: {ours[at]} where the test has "
            f"{theirs[at]}); write rows in the test file's order"
        )
    return problems


def _summary_problems(fnames: list[str], summaries: list[str]) -> list[str]:
    """Empty summaries and leftover special tokens."""
    problems = []
    empty = [f for f, s in zip(fnames, summaries) if not s.strip()]
    if empty:
        problems.append(
            f"{len(empty)} summaries are empty or whitespace only ({_examples(empty)}); write a summary for every dialogue"
        )
    for token in LEFTOVER_TOKENS:
        hits = [f for f, s in zip(fnames, summaries) if token in s]
        if hits:
            problems.append(
                f"{len(hits)} summaries contain the special token {token} (first: {hits[0]}); "
                "decode with skip_special_tokens=True or strip it"
            )
    return problems
