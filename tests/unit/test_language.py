"""data.language: the Hangul checks for Korean data only; and what counts as an empty answer (dsum.model.degenerate)."""

import logging

import pytest
from conftest import REPO
from standins import QWEN3

from dsum.config import PromptConfig, load_config
from dsum.data.korean import data_is_korean, is_korean_data
from dsum.model.degenerate import MIN_NEW_TOKENS, empty_rows, invisible_ids, report_empty
from dsum.util.errors import UserError

KOREAN = ["#Person1#: 안녕하세요. 오늘 회의는 몇 시예요?", "#Person2#: 세 시요. Jim도 와요."]
ENGLISH = ["#Person1#: Hello, when does the meeting start?", "#Person2#: At three. 민수 is coming too."]


def test_auto_decides_from_the_share_of_hangul_letters():
    assert is_korean_data("auto", KOREAN) is True
    assert is_korean_data("auto", ENGLISH) is False
    assert is_korean_data("auto", ["#Person1#: ...", "#Person2#: 123"]) is True  # no letters: dsum's default
    # A setting decides whatever the dialogues are.
    assert is_korean_data("en", KOREAN) is False
    assert is_korean_data("ko", ENGLISH) is True
    assert is_korean_data("ja", KOREAN) is False


def test_a_config_reads_its_dev_dialogues_then_its_training_file(tmp_path):
    sample = REPO / "data" / "sample"
    english = tmp_path / "dev.jsonl"
    english.write_text('{"fname": "dev_0", "dialogue": "#Person1#: Hello there.", "summary": "A greeting."}\n', encoding="utf-8")
    assert data_is_korean(load_config(None, {"data.dev": str(sample / "dev.csv")}).data) is True
    assert data_is_korean(load_config(None, {"data.dev": str(english)}).data) is False
    # A dev file that does not read: the training file decides.
    missing = {"data.dev": str(tmp_path / "absent.csv"), "data.train": [str(english)]}
    assert data_is_korean(load_config(None, missing).data) is False
    assert data_is_korean(load_config(None, {**missing, "data.language": "ko"}).data) is True


def test_data_language_is_auto_or_a_lowercase_code():
    assert load_config(None, {}).data.language == "auto"
    assert load_config(None, {"data.language": "en"}).data.language == "en"
    with pytest.raises(UserError, match="data.language"):
        load_config(None, {"data.language": "English"})


def test_invisible_ids_are_whitespace_control_tokens_and_the_unused_output_rows():
    from dsum.model.tokenization import AnswerDecoder, chat_framing, load_tokenizer

    tokenizer = load_tokenizer(QWEN3)
    decoder = AnswerDecoder(tokenizer, chat_framing(tokenizer, PromptConfig(template_options={"enable_thinking": False})))
    ids = invisible_ids(tokenizer, decoder.clean, 151936)
    assert len(tokenizer) == 151669 and ids[-267:] == list(range(151669, 151936))
    assert ids[:5] == [197, 198, 199, 200, 201]  # \t \n \x0b \x0c \r
    assert len(ids) == 722
    im_end, im_start = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|im_start|>"])
    assert {271, 220, im_end, im_start} <= set(ids)  # "\n\n", " ", the end of turn, a control token
    for visible in ("요", "#", "Person", "ĠJim"):
        assert tokenizer.convert_tokens_to_ids(visible) not in ids, visible
    assert invisible_ids(tokenizer, decoder.clean, 151936) is ids  # once per tokenizer


def test_empty_rows_and_their_report_by_id(caplog):
    assert empty_rows(["요약", "", " \n", None, "a"]) == [1, 2]  # None: another process's row
    fnames = [f"test_{i}" for i in range(8)]
    with caplog.at_level(logging.INFO, logger="dsum"):
        report_empty(fnames, [], [], 100)
        report_empty(fnames, [3, 1], [], 100)
        report_empty(fnames, [7, 6, 5, 4, 3, 2, 1], [6, 2], 2)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", f"2 answers were empty and were generated again with at least {MIN_NEW_TOKENS} new tokens (test_1, test_3)"),
        ("WARNING", "7 answers were empty and were generated again with at least 2 new tokens "
                    "(test_1, test_2, test_3, test_4, test_5, ...); 2 are still empty (test_2, test_6)"),
    ]
