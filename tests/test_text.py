"""Tests for dsum.text: the clean-up rules and special tokens."""

import json
import random
from pathlib import Path

import pytest

from dsum.data import read_table
from dsum.errors import UserError
from dsum.text import (
    DEFAULT_RULES,
    STANDARD_SPECIAL_TOKENS,
    TOKEN_PATTERN,
    Normalizer,
    Rule,
    find_special_tokens,
    normalizer_from_config,
    preprocess_file,
    special_tokens_for,
)

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
clean = Normalizer()


def test_standard_tokens():
    assert len(STANDARD_SPECIAL_TOKENS) == len(set(STANDARD_SPECIAL_TOKENS)) == 15
    assert STANDARD_SPECIAL_TOKENS[:2] == ("#Person1#", "#Person2#")
    assert "#Person7#" in STANDARD_SPECIAL_TOKENS and "#CarNumber#" in STANDARD_SPECIAL_TOKENS
    assert all(TOKEN_PATTERN.fullmatch(t) for t in STANDARD_SPECIAL_TOKENS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#Person1#: 진짜 ㅋㅋㅋ 웃기다", "#Person1#: 진짜 웃음 웃기다"),
        ("#Person1#: ㅎㅎ 네", "#Person1#: 웃음 네"),
        ("#Person1#: 너무해 ㅠㅠㅜ", "#Person1#: 너무해 슬픔"),
        ("#Person1#: 크크 흐흐", "#Person1#: 크크 흐흐"),  # full syllables are not jamo
        ("#Person1#: 안녕\\n#Person2#: 네", "#Person1#: 안녕\n#Person2#: 네"),
        ("#Person1#: 안녕<br>#Person2#: 네<BR />#Person1#: 응",
         "#Person1#: 안녕\n#Person2#: 네\n#Person1#: 응"),
        ("#Person1#: 안녕  \t하세요 ", "#Person1#: 안녕 하세요"),
        ("  #Person1#: 안녕\r\n\n \n#Person2#: 네\n", "#Person1#: 안녕\n#Person2#: 네"),
        ("#Person1#: 안녕 \\n #Person2#: 네", "#Person1#: 안녕\n#Person2#: 네"),
    ],
)
def test_default_rules(text, expected):
    assert clean(text) == expected


def test_tokens_next_to_rule_matches_are_untouched():
    assert clean("#Person1#ㅋㅋㅋ") == "#Person1#웃음"
    assert clean("ㅎㅎ#Person2#: 네") == "웃음#Person2#: 네"
    assert clean("#Person1#: ㅠㅠ#PhoneNumber#ㅋ") == "#Person1#: 슬픔#PhoneNumber#웃음"
    assert clean("#Person1#:   #Address#  ㅋ") == "#Person1#: #Address# 웃음"


def test_clean_up_never_changes_tokens_and_is_idempotent():
    # Random strings made of tokens, stray '#', artefacts and whitespace (fixed seed).
    parts = [*STANDARD_SPECIAL_TOKENS, "#Foo#", "#", "ㅋ", "ㅎㅎ", "ㅠ", "\\n", "<br>", "<br/>"]
    parts += [" ", "  ", "\t", "\n", "\r\n", "a", "n", "Person", "안녕", ":"]
    rng = random.Random(0)
    for _ in range(3000):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(0, 12)))
        out = clean(text)
        assert TOKEN_PATTERN.findall(out) == TOKEN_PATTERN.findall(text), text
        assert clean(out) == out, text


def test_rule_matches_inside_tokens_are_left_alone():
    upper = Normalizer([Rule("upper", "Person", "PERSON"), Rule("no_hash", "#", "")])
    assert upper("#Person1#: Person 3# 번") == "#Person1#: PERSON 3 번"


def test_rule_that_would_create_a_token_is_refused():
    bad = Normalizer([Rule("make_hash", "x", "#A")])
    assert bad("x 번") == "#A 번"  # no token involved: fine
    with pytest.raises(UserError, match="'make_hash' changed the #...# tokens"):
        bad("x#Person1#: 네")


def test_invalid_rule_is_a_user_error():
    with pytest.raises(UserError, match="rule 'broken' is not a valid regular expression"):
        Normalizer([Rule("broken", "ㅋ(", "")])
    with pytest.raises(UserError, match="rule 'bad_ref'"):
        Normalizer([Rule("bad_ref", "ㅋ", r"\2")])


def test_normalizer_from_config():
    from types import SimpleNamespace as NS

    assert normalizer_from_config(NS(clean=False, rules=None)) is None
    assert normalizer_from_config(NS(clean=False, rules=None), force=True).rules == DEFAULT_RULES
    custom = normalizer_from_config(NS(clean=True, rules=[NS(name="x", pattern="x+", replacement="y")]))
    assert custom.rules == (Rule("x", "x+", "y"),) and custom("#Person1#: xx") == "#Person1#: y"


def test_apply_with_counts():
    texts = ["#Person1#: ㅋㅋ ㅎ", "#Person1#: 네  ㅋ", "#Person1#: 네", "#Person1#: a<br>b"]
    out, counts = clean.apply_with_counts(texts)
    assert out == ["#Person1#: 웃음 웃음", "#Person1#: 네 웃음", "#Person1#: 네", "#Person1#: a\nb"]
    assert counts == {
        "literal_newline": 0,
        "html_br": 1,
        "laugh_k": 2,
        "laugh_h": 1,
        "sob": 0,
        "collapse_spaces": 1,
        "strip_lines": 0,
        "drop_empty_lines": 0,
    }
    assert list(counts) == [rule.name for rule in DEFAULT_RULES]


def test_find_special_tokens_and_vocabulary():
    texts = ["#Person1#: #Foo# #Bar#", "#Person2#: #Bar# #Person1# # 3#", "#Zed#"]
    expected = {"#Person1#": 2, "#Person2#": 1, "#Foo#": 1, "#Bar#": 2, "#Zed#": 1}
    assert find_special_tokens(texts) == expected
    assert special_tokens_for(texts) == [*STANDARD_SPECIAL_TOKENS, "#Bar#", "#Foo#", "#Zed#"]
    assert special_tokens_for([]) == list(STANDARD_SPECIAL_TOKENS)


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
