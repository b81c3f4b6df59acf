"""Tests for dsum.data.text: the clean-up rules and special tokens."""

import ast
import random
from pathlib import Path

import pytest

from dsum.util.errors import UserError
from dsum.data.text import (
    DEFAULT_RULES,
    STANDARD_SPECIAL_TOKENS,
    TOKEN_PATTERN,
    Normalizer,
    Rule,
    find_special_tokens,
    normalizer_from_config,
    special_tokens_for,
)

TEXT_PY = Path(__file__).resolve().parents[2] / "src" / "dsum" / "data" / "text.py"
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


def test_clean_with_rules_names_the_rules_that_changed_the_text():
    assert clean.clean_with_rules("#Person1#: 좋아ㅋㅋ  ㅠ") == ("#Person1#: 좋아웃음 슬픔", {"laugh_k", "sob", "collapse_spaces"})
    assert clean.clean_with_rules("#Person1#: 네") == ("#Person1#: 네", set())


def test_text_does_no_file_io_and_never_imports_data():
    """dsum.data.files imports dsum.data.text; the reverse, even inside a function, would be a cycle."""
    imported = set()
    for node in ast.walk(ast.parse(TEXT_PY.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert not any(name == "dsum.data.files" or name.startswith("dsum.data.files.") for name in imported), imported
    assert not {"dsum.util.atomic", "json", "pathlib"} & imported, imported
    import dsum.data.text

    assert not hasattr(dsum.data.text, "preprocess_file")
