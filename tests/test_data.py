"""Tests for dsum.data: reading and checking data files."""

import json
from pathlib import Path

import pytest

from dsum.data import (
    Example,
    check_files,
    file_sha256,
    read_examples,
    read_predictions,
    read_table,
    reference_map,
)
from dsum.errors import UserError

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not (SHARED / "competition-ko").is_dir(), reason=f"real data not present at {SHARED}"
)

GOOD_ROW = '"#Person1#: 안녕하세요.\n#Person2#: 네, 안녕하세요.",#Person1#이 인사합니다.,인사'


def write(tmp_path: Path, name: str, body: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(body, str):
        body = body.encode("utf-8")
    path.write_bytes(body)
    return path


def check_one(path: Path):
    (report,) = check_files([path])
    return report


def findings(report) -> dict[str, tuple[str, int]]:
    return {f.check: (f.level, f.count) for f in report.findings}


# --- check_files: one crafted defect per file ---------------------------------------------------


def test_clean_file_has_no_findings(tmp_path):
    path = write(tmp_path, "train.csv", f"fname,dialogue,summary,topic\ntrain_0,{GOOD_ROW}\n")
    report = check_one(path)
    assert (report.kind, report.rows) == ("train", 1)
    assert report.columns == ["fname", "dialogue", "summary", "topic"]
    assert report.findings == []
    assert report.tokens == {"#Person1#": 2, "#Person2#": 1}
    assert not report.has_errors


def test_missing_column_is_an_error(tmp_path):
    path = write(tmp_path, "train.csv", 'fname,dialogue\ntrain_0,"#Person1#: 안녕"\n')
    report = check_one(path)
    assert findings(report)["missing_columns"] == ("error", 1)
    assert "summary" in report.findings[0].message
    assert report.has_errors


def test_duplicate_fname_is_an_error(tmp_path):
    body = f"fname,dialogue,summary,topic\ndev_0,{GOOD_ROW}\ndev_0,{GOOD_ROW}\ndev_1,{GOOD_ROW}\n"
    report = check_one(write(tmp_path, "dev.csv", body))
    assert report.kind == "dev"
    assert findings(report) == {"duplicate_fname": ("error", 1)}
    assert "dev_0" in report.findings[0].message


def test_empty_fname_is_an_error(tmp_path):
    body = f"fname,dialogue,summary,topic\n,{GOOD_ROW}\ntrain_1,{GOOD_ROW}\n"
    report = check_one(write(tmp_path, "train.csv", body))
    assert findings(report) == {"empty_fname": ("error", 1)}


def test_empty_summary_and_dialogue_are_errors(tmp_path):
    body = (
        "fname,dialogue,summary,topic\n"
        'train_0,"#Person1#: 안녕",,인사\n'
        "train_1,,요약,인사\n"
        'train_2,"#Person1#: 네"," ",인사\n'
    )
    report = check_one(write(tmp_path, "train.csv", body))
    assert findings(report) == {"empty_summary": ("error", 2), "empty_dialogue": ("error", 1)}
    assert "'train_0'" in next(f.message for f in report.findings if f.check == "empty_summary")


def test_untagged_turn_is_a_warning(tmp_path):
    body = 'fname,dialogue\ntest_0,"#Person1#: 안녕\n그냥 말함\n#Person2#: 네\nPerson1: 또"\n'
    report = check_one(write(tmp_path, "test.csv", body))
    assert report.kind == "test"
    assert findings(report) == {"untagged_turn": ("warning", 2)}
    assert "'test_0'" in report.findings[0].message


def test_unknown_token_is_a_warning(tmp_path):
    body = 'fname,dialogue\ntest_0,"#Person1#: #PErson2# 말고 #Foo# #Foo# #Email#"\n'
    report = check_one(write(tmp_path, "test.csv", body))
    assert findings(report) == {"unknown_tokens": ("warning", 3)}
    assert "#Foo# ×2" in report.findings[0].message and "#PErson2# ×1" in report.findings[0].message
    assert report.tokens == {"#Person1#": 1, "#PErson2#": 1, "#Foo#": 2, "#Email#": 1}


def test_bom_is_a_warning(tmp_path):
    body = b"\xef\xbb\xbf" + 'fname,dialogue\ntest_0,"#Person1#: 안녕"\n'.encode()
    report = check_one(write(tmp_path, "test.csv", body))
    assert findings(report) == {"bom": ("warning", 1)}
    assert report.columns == ["fname", "dialogue"]  # the BOM does not stick to the first name


def test_non_utf8_is_an_error(tmp_path):
    body = 'fname,dialogue\ntest_0,"#Person1#: 안녕"\n'.encode("cp949")
    report = check_one(write(tmp_path, "test.csv", body))
    assert findings(report)["encoding"][0] == "error"
    assert report.rows == 1  # the rest of the checks still ran
    with pytest.raises(UserError, match="not UTF-8.*re-save"):
        read_table(tmp_path / "test.csv")


def test_crlf_is_a_warning(tmp_path):
    body = 'fname,dialogue\r\ntest_0,"#Person1#: 안녕\r\n#Person2#: 네"\r\n'
    report = check_one(write(tmp_path, "test.csv", body))
    assert findings(report)["crlf"] == ("warning", 3)
    assert "untagged_turn" not in findings(report)


def test_index_column_is_info(tmp_path):
    body = ",fname,summary\n0,test_0,요약문입니다.\n1,test_1,요약문입니다.\n"
    report = check_one(write(tmp_path, "sample_submission.csv", body))
    assert report.kind == "submission"
    assert report.columns == ["", "fname", "summary"]
    assert findings(report) == {"index_column": ("info", 1)}


def test_literal_newline_and_br_are_warnings(tmp_path):
    body = 'fname,dialogue\ntest_0,"#Person1#: 안녕\\n#Person2#: 네<br>#Person1#: 응"\n'
    report = check_one(write(tmp_path, "test.csv", body))
    got = findings(report)
    assert got["literal_newline_dialogue"] == ("warning", 1)
    assert got["html_br_dialogue"] == ("warning", 1)


def test_spacing_is_info(tmp_path):
    body = 'fname,dialogue\ntest_0,"#Person1#: 안녕  하세요 \n#Person2#: 네"\n'
    report = check_one(write(tmp_path, "test.csv", body))
    assert findings(report) == {"spacing_dialogue": ("info", 1)}


def test_unparsable_file_is_an_error_finding(tmp_path):
    report = check_one(write(tmp_path, "dev.jsonl", '{"fname": "a"}\nnot json\n'))
    assert findings(report) == {"unreadable": ("error", 1)}


def test_missing_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        check_files([tmp_path / "nope.csv"])


def test_report_to_dict_is_json(tmp_path):
    path = write(tmp_path, "train.csv", f"fname,dialogue,summary,topic\ntrain_0,{GOOD_ROW}\n,x,,\n")
    data = json.loads(json.dumps(check_one(path).to_dict(), ensure_ascii=False))
    assert data["kind"] == "train" and data["rows"] == 2
    assert data["errors"] == 2  # empty fname, empty summary
    assert data["tokens"] == {"#Person1#": 2, "#Person2#": 1}
    assert {"level", "file", "check", "message", "count"} <= set(data["findings"][0])


# --- reading -------------------------------------------------------------------------------------


def test_jsonl_with_three_summaries(tmp_path):
    def row(fname, dialogue, summaries, topic):
        refs = {f"summary{i}": s for i, s in enumerate(summaries, 1)}
        return {"fname": fname, "dialogue": dialogue, **refs, "topic1": topic, "topic2": topic}

    rows = [row("test_0", "#Person1#: Hi.", "abc", "t"), row("test_1", "#Person1#: Yo.", "def", "u")]
    path = write(tmp_path, "x.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    examples = read_examples(path, require_summary=True)
    assert examples[0] == Example("test_0", "#Person1#: Hi.", ("a", "b", "c"), "t")
    assert reference_map(examples) == {"test_0": ("a", "b", "c"), "test_1": ("d", "e", "f")}
    assert check_one(path).findings == []


def test_read_table_keeps_unnamed_index_and_strings(tmp_path):
    path = write(tmp_path, "s.csv", ",fname,summary\n0,test_0,007\n1,test_1,\n")
    table = read_table(path)
    assert list(table.columns) == ["", "fname", "summary"]
    assert table["summary"].tolist() == ["007", ""]  # no numbers, no NaN


def test_read_examples_missing_columns_names_them(tmp_path):
    path = write(tmp_path, "train.csv", "id,text\n1,hello\n")
    with pytest.raises(UserError, match=r"missing column\(s\) fname, dialogue.*'id', 'text'"):
        read_examples(path)


def test_read_examples_require_summary(tmp_path):
    path = write(tmp_path, "test.csv", 'fname,dialogue\ntest_0,"#Person1#: 안녕"\n')
    assert read_examples(path) == [Example("test_0", "#Person1#: 안녕", (), None)]
    with pytest.raises(UserError, match="summary"):
        read_examples(path, require_summary=True)


def test_read_predictions(tmp_path):
    path = write(tmp_path, "pred.csv", ",fname,summary\n0,test_1,하나\n1,test_0,둘\n")
    assert read_predictions(path) == {"test_1": "하나", "test_0": "둘"}
    plain = write(tmp_path, "plain.csv", "fname,summary\ntest_0,둘\n")
    assert read_predictions(plain) == {"test_0": "둘"}
    dupes = write(tmp_path, "dupes.csv", "fname,summary\ntest_0,a\ntest_0,b\n")
    with pytest.raises(UserError, match="duplicate fname.*test_0"):
        read_predictions(dupes)


def test_read_table_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(UserError, match="unsupported file type '.txt'"):
        read_table(write(tmp_path, "a.txt", "x"))
    with pytest.raises(UserError, match="empty"):
        read_table(write(tmp_path, "empty.csv", ""))


def test_file_sha256(tmp_path):
    path = write(tmp_path, "a.csv", "abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_bundled_sample():
    train = read_examples(SAMPLE / "train.csv", require_summary=True)
    dev = read_examples(SAMPLE / "dev.csv", require_summary=True)
    test = read_examples(SAMPLE / "test.csv")
    assert (len(train), len(dev), len(test)) == (80, 20, 20)
    assert train[0].fname == "train_0" and dev[-1].fname == "dev_19"
    assert all(len(ex.summaries) == 1 and ex.topic for ex in train + dev)
    assert all(ex.summaries == () for ex in test)
    assert train[0].dialogue.startswith("#Person1#: ")
    predictions = read_predictions(SAMPLE / "sample_submission.csv")
    assert list(predictions) == [ex.fname for ex in test]
    assert set(predictions.values()) == {"요약문입니다."}
    reports = check_files(sorted(SAMPLE.glob("*.csv")))
    assert [r.kind for r in reports] == ["dev", "submission", "test", "train"]
    assert not any(r.has_errors for r in reports)


@needs_shared
def test_real_dev_and_test_have_no_errors():
    real = SHARED / "competition-ko"
    dev, test = check_files([real / "dev.csv", real / "test.csv"])
    assert (dev.kind, dev.rows, test.kind, test.rows) == ("dev", 499, "test", 499)
    for report in (dev, test):
        assert not report.has_errors, report.findings
        assert [f.level for f in report.findings if f.level != "info"] == []
        assert report.tokens["#Person1#"] > 2000
        assert report.tokens["#PhoneNumber#"] == 5
    assert dev.tokens["#DateOfBirth#"] == 3 and test.tokens["#PassportNumber#"] == 1


@needs_shared
def test_real_dialogsum_test_has_three_references():
    examples = read_examples(SHARED / "dialogsum-en" / "dialogsum.test.jsonl", require_summary=True)
    assert len(examples) == 500
    assert all(len(ex.summaries) == 3 for ex in examples)
