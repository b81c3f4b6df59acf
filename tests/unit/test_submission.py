"""Submission writing and checking, on small files crafted in tmp_path."""

from pathlib import Path

import pytest

from dsum.util.errors import UserError
from dsum.data.submission import LEFTOVER_TOKENS, check_submission, write_checked_submission, write_submission

FNAMES = ["test_0", "test_1", "test_2", "test_3"]
PREDS = {f: f"#Person1#는 요약 {i}입니다." for i, f in enumerate(FNAMES)}


@pytest.fixture
def test_csv(tmp_path: Path) -> Path:
    path = tmp_path / "test.csv"
    rows = "".join(f'{f},"#Person1#: 안녕\n#Person2#: 네 {i}"\n' for i, f in enumerate(FNAMES))
    path.write_text("fname,dialogue\n" + rows, encoding="utf-8")
    return path


@pytest.fixture
def sample_csv(tmp_path: Path) -> Path:
    path = tmp_path / "sample_submission.csv"
    path.write_text(",fname,summary\n" + "".join(f"{i},{f},요약문입니다.\n" for i, f in enumerate(FNAMES)))
    return path


def write_sub(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "sub.csv"
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def official(rows: list[tuple[str, str]]) -> str:
    """A submission in the official layout from (fname, summary) rows."""
    return ",fname,summary\n" + "".join(f"{i},{f},{s}\n" for i, (f, s) in enumerate(rows))


GOOD_ROWS = [(f, PREDS[f]) for f in FNAMES]


def only(problems: list[str], needle: str) -> str:
    """The single problem line containing `needle`."""
    hits = [p for p in problems if needle in p]
    assert len(hits) == 1, problems
    return hits[0]


# --- write_submission -------------------------------------------------------------------------


def test_write_default_layout_is_official(tmp_path: Path) -> None:
    out = write_submission(tmp_path / "out" / "sub.csv", PREDS, FNAMES)
    assert out == tmp_path / "out" / "sub.csv"  # parent folder created
    raw = out.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    assert raw.decode("utf-8") == official(GOOD_ROWS)


def test_write_copies_sample_layout(tmp_path: Path, sample_csv: Path) -> None:
    out = write_submission(tmp_path / "sub.csv", PREDS, FNAMES, sample=sample_csv)
    assert out.read_text(encoding="utf-8").splitlines()[:2] == [",fname,summary", f"0,test_0,{PREDS['test_0']}"]

    plain = tmp_path / "plain_sample.csv"
    plain.write_text("fname,summary\ntest_0,x\n")
    out = write_submission(tmp_path / "sub2.csv", PREDS, FNAMES, sample=plain)
    assert out.read_text(encoding="utf-8") == "fname,summary\n" + "".join(f"{f},{s}\n" for f, s in GOOD_ROWS)


def test_write_follows_test_order_and_ignores_extra_predictions(tmp_path: Path) -> None:
    order = ["test_2", "test_0", "test_3", "test_1"]
    preds = dict(reversed(list(PREDS.items()))) | {"test_99": "unused"}
    text = write_submission(tmp_path / "sub.csv", preds, order).read_text(encoding="utf-8")
    assert [line.split(",")[1] for line in text.splitlines()[1:]] == order


def test_write_makes_each_summary_one_line_and_quotes_commas(tmp_path: Path) -> None:
    preds = dict(PREDS, test_1="첫 줄\n둘째 줄\r\n셋째, 줄")
    text = write_submission(tmp_path / "sub.csv", preds, FNAMES).read_text(encoding="utf-8")
    assert text.splitlines()[2] == '1,test_1,"첫 줄 둘째 줄 셋째, 줄"'
    assert len(text.splitlines()) == 1 + len(FNAMES)


def test_write_missing_prediction_raises_and_leaves_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "sub.csv"
    path.write_text("previous submission\n")
    preds = {f: s for f, s in PREDS.items() if f != "test_2"}
    with pytest.raises(UserError, match=r"no prediction for 1 of 4 test dialogues \(test_2\)"):
        write_submission(path, preds, FNAMES)
    assert path.read_text() == "previous submission\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv"]  # no temp file left behind


def test_write_rejects_a_sample_it_does_not_understand(tmp_path: Path) -> None:
    bad = tmp_path / "bad_sample.csv"
    bad.write_text("id,text\n")
    with pytest.raises(UserError, match="expected ',fname,summary'"):
        write_submission(tmp_path / "sub.csv", PREDS, FNAMES, sample=bad)
    assert not (tmp_path / "sub.csv").exists()


def test_written_submission_passes_check(tmp_path: Path, test_csv: Path, sample_csv: Path) -> None:
    out = write_submission(tmp_path / "sub.csv", PREDS, FNAMES, sample=sample_csv)
    assert check_submission(out, test_csv, sample=sample_csv) == []
    out = write_submission(tmp_path / "sub_default.csv", PREDS, FNAMES)
    assert check_submission(out, test_csv) == []


def test_bundled_sample_round_trip(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2] / "data" / "sample"
    test, sample = root / "test.csv", root / "sample_submission.csv"
    if not (test.is_file() and sample.is_file()):
        pytest.skip("no bundled sample data")
    import pandas as pd

    fnames = pd.read_csv(test, dtype=str, keep_default_na=False)["fname"].tolist()
    out = write_submission(tmp_path / "sub.csv", {f: "요약." for f in fnames}, fnames, sample=sample)
    assert check_submission(out, test, sample=sample) == []


# --- check_submission: one test per kind of problem -------------------------------------------


def test_check_plain_layout_without_sample_is_ok(tmp_path: Path, test_csv: Path) -> None:
    sub = write_sub(tmp_path, "fname,summary\n" + "".join(f"{f},{s}\n" for f, s in GOOD_ROWS))
    assert check_submission(sub, test_csv) == []


def test_check_missing_file(tmp_path: Path, test_csv: Path) -> None:
    problems = check_submission(tmp_path / "nope.csv", test_csv)
    assert len(problems) == 1
    assert "submission file not found" in problems[0] and "nope.csv" in problems[0]


def test_check_missing_id(tmp_path: Path, test_csv: Path) -> None:
    sub = write_sub(tmp_path, official([r for r in GOOD_ROWS if r[0] not in ("test_1", "test_3")]))
    problems = check_submission(sub, test_csv)
    assert problems == ["2 test ids are missing (test_1, test_3); write one row per test dialogue"]


def test_check_extra_id(tmp_path: Path, test_csv: Path) -> None:
    sub = write_sub(tmp_path, official(GOOD_ROWS + [("dev_7", "요약.")]))
    assert check_submission(sub, test_csv) == ["1 ids are not in the test file (dev_7); remove those rows"]


def test_check_duplicate_id(tmp_path: Path, test_csv: Path) -> None:
    sub = write_sub(tmp_path, official(GOOD_ROWS + [("test_2", "다시.")]))
    assert check_submission(sub, test_csv) == ["1 ids appear more than once (test_2); keep one row per id"]


def test_check_row_order(tmp_path: Path, test_csv: Path) -> None:
    sub = write_sub(tmp_path, official([GOOD_ROWS[1], GOOD_ROWS[0], *GOOD_ROWS[2:]]))
    problem = only(check_submission(sub, test_csv), "not in the test file's order")
    assert "first difference: test_1 where the test has test_0" in problem


def test_check_empty_summary(tmp_path: Path, test_csv: Path) -> None:
    rows = [(f, "   " if f == "test_1" else ("" if f == "test_3" else s)) for f, s in GOOD_ROWS]
    problems = check_submission(write_sub(tmp_path, official(rows)), test_csv)
    assert problems == [
        "2 summaries are empty or whitespace only (test_1, test_3); write a summary for every dialogue"
    ]


@pytest.mark.parametrize("token", LEFTOVER_TOKENS)
def test_check_leftover_token(tmp_path: Path, test_csv: Path, token: str) -> None:
    rows = [(f, f"{token}{s}" if f in ("test_2", "test_3") else s) for f, s in GOOD_ROWS]
    problems = check_submission(write_sub(tmp_path, official(rows)), test_csv)
    assert problems == [
        f"2 summaries contain the special token {token} (first: test_2); "
        "decode with skip_special_tokens=True or strip it"
    ]


def test_check_end_token_is_not_also_counted_as_start_token(tmp_path: Path, test_csv: Path) -> None:
    rows = [(f, f"{s}</s>" if f == "test_0" else s) for f, s in GOOD_ROWS]
    problems = check_submission(write_sub(tmp_path, official(rows)), test_csv)
    assert len(problems) == 1 and "special token </s>" in problems[0]


def test_check_non_utf8(tmp_path: Path, test_csv: Path) -> None:
    sub = write_sub(tmp_path, official(GOOD_ROWS).encode("cp949"))
    problem = only(check_submission(sub, test_csv), "not valid UTF-8")
    assert "on line 2" in problem and "save it as UTF-8" in problem


def test_check_bom(tmp_path: Path, test_csv: Path) -> None:
    sub = write_sub(tmp_path, b"\xef\xbb\xbf" + official(GOOD_ROWS).encode("utf-8"))
    # Only the BOM: the header is still recognised once the BOM is set aside.
    assert check_submission(sub, test_csv) == [
        "the file starts with a UTF-8 byte order mark (BOM); save it as UTF-8 without BOM"
    ]


def test_check_layout_missing_index_column_vs_sample(tmp_path: Path, test_csv: Path, sample_csv: Path) -> None:
    sub = write_sub(tmp_path, "fname,summary\n" + "".join(f"{f},{s}\n" for f, s in GOOD_ROWS))
    assert check_submission(sub, test_csv, sample=sample_csv) == [
        "the columns 'fname,summary' differ from the sample's ',fname,summary'; write the header exactly as in the sample"
    ]


def test_check_layout_other_order_and_extra_column(tmp_path: Path, test_csv: Path, sample_csv: Path) -> None:
    sub = write_sub(tmp_path, ",summary,fname\n" + "".join(f"{i},{s},{f}\n" for i, (f, s) in enumerate(GOOD_ROWS)))
    assert "differ from the sample's" in only(check_submission(sub, test_csv, sample=sample_csv), "columns")

    sub = write_sub(tmp_path, ",fname,summary,topic\n" + "".join(f"{i},{f},{s},t\n" for i, (f, s) in enumerate(GOOD_ROWS)))
    assert "',fname,summary,topic' differ" in only(check_submission(sub, test_csv, sample=sample_csv), "columns")
    # Without a sample, an extra column is still not an accepted layout.
    assert "not an accepted layout" in only(check_submission(sub, test_csv), "columns")


def test_check_missing_summary_column(tmp_path: Path, test_csv: Path) -> None:
    sub = write_sub(tmp_path, "fname,text\n" + "".join(f"{f},{s}\n" for f, s in GOOD_ROWS))
    assert check_submission(sub, test_csv) == [
        "no 'summary' column (header is 'fname,text'); the header must be ',fname,summary'"
    ]


def test_check_index_values_under_index_less_header(tmp_path: Path, test_csv: Path) -> None:
    # pandas would silently read the surplus first field as the index; the check must not.
    sub = write_sub(tmp_path, "fname,summary\n" + "".join(f"{i},{f},{s}\n" for i, (f, s) in enumerate(GOOD_ROWS)))
    problem = only(check_submission(sub, test_csv), "fields")
    assert problem.startswith("4 rows do not have the header's 2 fields (first: line 2 has 3)")


def test_check_unreadable_csv(tmp_path: Path, test_csv: Path) -> None:
    problem = only(check_submission(write_sub(tmp_path, ""), test_csv), "not a readable CSV")
    assert "write it with a CSV writer" in problem


def test_check_lists_every_problem(tmp_path: Path, test_csv: Path, sample_csv: Path) -> None:
    rows = [("test_0", "<pad>요약</s>"), ("test_0", "요약."), ("test_2", " "), ("extra_1", "<unk>")]
    body = "fname,summary\n" + "".join(f"{f},{s}\n" for f, s in rows)
    sub = write_sub(tmp_path, b"\xef\xbb\xbf" + body.encode("utf-8"))
    problems = check_submission(sub, test_csv, sample=sample_csv)
    expected = [
        "byte order mark",
        "differ from the sample's",
        "2 test ids are missing (test_1, test_3)",
        "1 ids are not in the test file (extra_1)",
        "1 ids appear more than once (test_0)",
        "1 summaries are empty or whitespace only (test_2)",
        "special token </s> (first: test_0)",
        "special token <pad> (first: test_0)",
        "special token <unk> (first: extra_1)",
    ]
    for needle in expected:
        only(problems, needle)
    assert len(problems) == len(expected)


def test_check_unreadable_test_file_is_a_user_error(tmp_path: Path) -> None:
    sub = write_sub(tmp_path, official(GOOD_ROWS))
    with pytest.raises(UserError, match=r"missing_test.csv does not exist: check the path"):
        check_submission(sub, tmp_path / "missing_test.csv")


# --- write_checked_submission: the one writer every command uses -------------------------------


def test_checked_submission_follows_the_test_file_and_the_sample(tmp_path: Path, test_csv: Path, sample_csv: Path) -> None:
    out = write_checked_submission(tmp_path / "sub.csv", PREDS, test_csv, sample_csv)
    assert out == tmp_path / "sub.csv"
    assert out.read_text(encoding="utf-8") == official(GOOD_ROWS)
    plain = tmp_path / "plain_sample.csv"
    plain.write_text("fname,summary\n")
    text = write_checked_submission(tmp_path / "sub2.csv", PREDS, str(test_csv), plain).read_text(encoding="utf-8")
    assert text == "fname,summary\n" + "".join(f"{f},{s}\n" for f, s in GOOD_ROWS)


def test_checked_submission_of_some_rows_takes_their_fnames(tmp_path: Path, test_csv: Path) -> None:
    # `dsum llm summarize --limit 2`: the first two rows, checked against those two, no ids file.
    out = write_checked_submission(tmp_path / "sub.csv", PREDS, FNAMES[:2])
    assert out.read_text(encoding="utf-8") == official(GOOD_ROWS[:2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.csv", "test.csv"]
    assert check_submission(out, FNAMES[:2]) == []
    assert check_submission(out, FNAMES) == ["2 test ids are missing (test_2, test_3); write one row per test dialogue"]


def test_checked_submission_with_a_problem_is_a_user_error_naming_it(tmp_path: Path, test_csv: Path) -> None:
    preds = {**PREDS, "test_1": "요약</s>", "test_3": "  "}
    with pytest.raises(UserError) as caught:
        write_checked_submission(tmp_path / "sub.csv", preds, test_csv)
    message = str(caught.value)
    invalid = tmp_path / "sub.invalid.csv"
    assert message.startswith(f"the submission failed its check, kept as {invalid} (not sub.csv): ")
    assert "1 summaries are empty or whitespace only (test_3)" in message
    assert "special token </s> (first: test_1)" in message
    # The file that failed is never left under the submission's name; a later good one replaces the kept file.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.invalid.csv", "test.csv"]
    assert message.endswith(": " + "; ".join(check_submission(invalid, test_csv)))
    write_checked_submission(tmp_path / "sub.csv", PREDS, test_csv)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.csv", "test.csv"]
    with pytest.raises(UserError, match=r"no prediction for 1 of 4 test dialogues \(test_2\)"):
        write_checked_submission(tmp_path / "sub2.csv", {f: PREDS[f] for f in FNAMES if f != "test_2"}, test_csv)
    assert not (tmp_path / "sub2.csv").exists()
