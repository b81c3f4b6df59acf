"""Tests for dsum.data.files: reading and checking data files."""

import json
import random
from pathlib import Path

import pytest

from dsum.data.check import check_files
from dsum.data.files import (
    Example,
    file_sha256,
    preprocess_file,
    read_examples,
    read_predictions,
    read_table,
    reference_map,
)
from dsum.util.errors import UserError
from dsum.data.text import Normalizer

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
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


def random_files(tmp_path: Path) -> list[Path]:
    """Seeded junk named like data files: random bytes, the same as 7-bit text (a lone \\r in an
    unquoted field broke the header read with csv.Error), and NUL bytes."""
    bodies = {}
    for seed in range(20):
        raw = random.Random(seed).randbytes(2000)
        bodies[f"bytes{seed}.csv"] = raw
        bodies[f"ascii{seed}.csv"] = bytes(b & 0x7F for b in raw)
        bodies[f"ascii{seed}.jsonl"] = bytes(b & 0x7F for b in raw)
    bodies["quote_nul.csv"] = b'a,"b\x00'
    bodies["nul_fname.csv"] = b"fname,dialogue\n\x00,#Person1#: x\n"
    bodies["deep.jsonl"] = b"[" * 100_000
    return [write(tmp_path, name, body) for name, body in bodies.items()]


def test_unparsable_files_are_error_findings_and_user_errors(tmp_path):
    for path in random_files(tmp_path):
        report = check_one(path)
        assert report.has_errors, path
        with pytest.raises(UserError) as caught:
            read_examples(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: ") and "\n" not in message, message


def test_nul_bytes_are_named(tmp_path):
    path = write(tmp_path, "train.csv", b"fname,dialogue,summary\nt0,\x00,x\n")
    assert findings(check_one(path)) == {"nul_bytes": ("error", 1)}
    with pytest.raises(UserError, match="NUL bytes .first at offset 26."):
        read_table(path)


def test_csv_with_a_lone_carriage_return_is_read_as_pandas_reads_it(tmp_path):
    path = write(tmp_path, "pred.csv", b"fname,summary\ra,b\rc,d\r")
    assert read_predictions(path) == {"a": "b", "c": "d"}


def test_header_only_file_is_an_error(tmp_path):
    path = write(tmp_path, "train.csv", "fname,dialogue,summary,topic\n")
    report = check_one(path)
    assert report.rows == 0 and findings(report) == {"no_rows": ("error", 1)}
    with pytest.raises(UserError, match="no data rows"):
        read_examples(path)
    jsonl = write(tmp_path, "dev.jsonl", "\n\n")
    assert findings(check_one(jsonl))["no_rows"] == ("error", 1)


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


# --- preprocess_file: a cleaned copy of a file ---------------------------------------------------

clean = Normalizer()


def test_preprocess_without_rules_reproduces_the_files_byte_for_byte(tmp_path):
    for name in ("train.csv", "test.csv", "sample_submission.csv"):
        dst = tmp_path / name
        counts = preprocess_file(SAMPLE / name, dst, Normalizer([]))
        assert counts == {}
        assert dst.read_bytes() == (SAMPLE / name).read_bytes()


def test_preprocess_csv_round_trip(tmp_path):
    src = tmp_path / "train.csv"
    src.write_text(
        ",fname,dialogue,summary,topic\n"
        '0,train_9,"#Person1#: ㅋㅋ 안녕 \n#Person2#: 네",#Person1#가  인사함,a  b\n'
        '1,train_3,"#Person1#: 그래<br>#Person2#: ㅠㅠ",요약,c\n'
        '2,train_5,"#Person1#: 네",요약,d\n',
        encoding="utf-8",
    )
    dst = tmp_path / "out" / "train.csv"
    counts = preprocess_file(src, dst, clean)
    table = read_table(dst)
    assert list(table.columns) == ["", "fname", "dialogue", "summary", "topic"]
    assert table["fname"].tolist() == ["train_9", "train_3", "train_5"]
    assert table[""].tolist() == ["0", "1", "2"]
    assert table["dialogue"].tolist() == [
        "#Person1#: 웃음 안녕\n#Person2#: 네",
        "#Person1#: 그래\n#Person2#: 슬픔",
        "#Person1#: 네",
    ]
    assert table["summary"].tolist() == ["#Person1#가 인사함", "요약", "요약"]
    assert table["topic"].tolist() == ["a  b", "c", "d"]  # not a text column: untouched
    # Row 0 changes in dialogue (strip) and summary (collapse): each rule counts the row once.
    assert counts == dict(
        literal_newline=0, html_br=1, laugh_k=1, laugh_h=0, sob=1,
        collapse_spaces=1, strip_lines=1, drop_empty_lines=0,
    )
    assert sorted(p.name for p in dst.parent.iterdir()) == ["train.csv"]  # no temp file left


def test_preprocess_jsonl_round_trip_in_place(tmp_path):
    path = tmp_path / "test.jsonl"
    rows = [
        dict(fname="t1", dialogue="#Person1#: hi  ㅎ", summary1="a ", summary2="b", topic1="x  y"),
        dict(fname="t0", dialogue="#Person1#: ok", summary1="c", summary2="d", topic1="z"),
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    counts = preprocess_file(path, path, clean)
    out = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert [list(r) for r in out] == [list(r) for r in rows]
    assert out[0] == dict(rows[0], dialogue="#Person1#: hi 웃음", summary1="a")
    assert out[1] == rows[1]
    assert (counts["laugh_h"], counts["collapse_spaces"], counts["strip_lines"]) == (1, 1, 1)


def test_preprocess_refuses_a_different_format(tmp_path):
    with pytest.raises(UserError, match="same format"):
        preprocess_file(SAMPLE / "dev.csv", tmp_path / "dev.jsonl", clean)
