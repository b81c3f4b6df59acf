"""`dsum augment`: local methods on the bundled sample, API methods against a local server."""

import random
import re
from collections import Counter

import pandas as pd
import pytest
from conftest import REPO, run_dsum
from fake_openai_server import FakeChatServer, echo_answer

from dsum.verbs.augment import AEDA_MARKS, FILLER_WORDS, FILLERS, aeda, augment_file, speakers, tokens_match, turn_noise
from dsum.config import load_config
from dsum.data.files import read_examples
from dsum.data.text import TOKEN_PATTERN

KEY = "sk-test-SECRET-123"
TRAIN = read_examples(REPO / "data/sample/train.csv")
SWAP = {"#Person1#": "#Person2#", "#Person2#": "#Person1#"}


def swapped_tokens(text: str) -> Counter:
    return Counter(SWAP.get(t, t) for t in TOKEN_PATTERN.findall(text))


def test_speaker_swap_on_the_sample_keeps_every_token_and_feeds_training(tmp_path):
    out = tmp_path / "train_speaker-swap.csv"
    result = run_dsum("augment", "-c", "configs/demo.yaml", "--method", "speaker-swap", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"augmented rows: {out}" in result.stdout
    for reason, count in (("written", 80), ("rejected: #...# tokens changed", 0), ("unchanged", 0), ("duplicate", 0)):
        assert re.search(rf"│ {re.escape(reason)} +│ +{count} │", result.stdout), reason  # every reason, 0 included

    rows = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(rows.columns) == ["fname", "dialogue", "summary", "topic", "source_fname", "method"]
    assert len(rows) == len(TRAIN) == 80
    sources = {ex.fname: ex for ex in TRAIN}
    for row in rows.itertuples():
        src = sources[row.source_fname]
        assert row.fname == f"{src.fname}__speaker-swap" and row.method == "speaker-swap"
        assert Counter(TOKEN_PATTERN.findall(row.dialogue)) == swapped_tokens(src.dialogue)
        assert Counter(TOKEN_PATTERN.findall(row.summary)) == swapped_tokens(src.summaries[0])
        assert row.topic == (src.topic or "")
    first = rows.iloc[0]
    assert first.dialogue.startswith("#Person2#: 안녕하세요, 오늘 기분이 어떠세요?\n#Person1#: 요즘 숨쉬기가 힘들어요.")
    assert first.summary.startswith("#Person1#는 숨쉬기 어려워합니다.")

    # The file goes into data.train beside the original: read the way `dsum train` reads it.
    cfg = load_config(REPO / "configs/demo.yaml", [f"data.train=[data/sample/train.csv, {out}]"])
    examples = [ex for path in cfg.data.train for ex in read_examples(REPO / path, require_summary=True)]
    assert len(examples) == 160 and len({ex.fname for ex in examples}) == 160
    check = run_dsum("data", "check", str(out))
    assert check.returncode == 0, check.stdout


@pytest.mark.parametrize("method", [aeda, turn_noise])
def test_noise_methods_are_seeded_and_keep_tokens_and_turns(method):
    cfg = load_config(REPO / "configs/demo.yaml")
    changed = 0
    for ex in TRAIN:
        a = method(ex.dialogue, ex.summaries[0], random.Random(f"7:{ex.fname}"), cfg)
        b = method(ex.dialogue, ex.summaries[0], random.Random(f"7:{ex.fname}"), cfg)
        assert a == b  # same seed, same row → same output
        dialogue, summary = a
        assert summary == ex.summaries[0]
        assert tokens_match(ex.dialogue, dialogue)
        assert speakers(dialogue) == speakers(ex.dialogue)
        changed += dialogue != ex.dialogue
        # aeda only adds punctuation marks; turn-noise only adds, drops or repeats filler words.
        noise = set(AEDA_MARKS) if method is aeda else FILLER_WORDS | set(FILLERS)

        def content(text):
            return [w for line in text.split("\n") for w in line.split(" ") if w not in noise]

        assert content(dialogue) == content(ex.dialogue)
    assert changed == len(TRAIN)


def test_paraphrase_rejects_rows_that_lose_a_token_and_the_cache_makes_reruns_free(tmp_path, monkeypatch):
    monkeypatch.setenv("UPSTAGE_API_KEY", KEY)

    def answer(messages):
        text = echo_answer(messages)  # "요." → "요!", "다." → "다!"
        if "감사" in text:
            return text.replace("#Person1#", "손님", 1)  # a token lost
        if "안녕" in text:
            first, second, *rest = text.split("\n")
            return "\n".join([second, first, *rest])  # the same tokens, but the turns out of order
        return text

    with FakeChatServer(KEY, answer=answer) as server:
        cfg = load_config(REPO / "configs/demo.yaml", [
            f"llm.base_url={server.base_url}", f"llm.cache={tmp_path / 'cache.sqlite'}",
            f"general.output_dir={tmp_path}", "llm.requests_per_minute=6000", "llm.window_s=1",
        ])
        result = augment_file(cfg, "llm-paraphrase", limit=30)
        sources = TRAIN[:30]
        lost = [ex for ex in sources if "감사" in ex.dialogue]
        reordered = [ex for ex in sources if "안녕" in ex.dialogue and ex not in lost]
        same = [ex for ex in sources if ex not in lost + reordered and "요." not in ex.dialogue and "다." not in ex.dialogue]
        assert len(lost) >= 2 and len(reordered) >= 2
        assert result.counts == {"rejected: #...# tokens changed": len(lost), "rejected: turns changed": len(reordered), **({"unchanged": len(same)} if same else {})}
        assert result.written == 30 - len(lost) - len(reordered) - len(same)
        assert len(server.arrivals) == 30 and result.api["requests_sent"] == 30
        rows = pd.read_csv(result.path, dtype=str, keep_default_na=False)
        assert result.path == tmp_path / "augment" / "train_llm-paraphrase.csv"
        sources = {ex.fname: ex for ex in TRAIN}
        for row in rows.itertuples():
            src = sources[row.source_fname]
            expected = src.dialogue.replace("요.", "요!").replace("다.", "다!")
            assert row.dialogue == "\n".join(line.strip() for line in expected.split("\n"))  # lines stripped
            assert row.summary == src.summaries[0]

        again = augment_file(cfg, "llm-paraphrase", limit=30)
        assert len(server.arrivals) == 30 and again.api["from_cache"] == 30
        assert pd.read_csv(again.path, dtype=str, keep_default_na=False).equals(rows)


def test_back_translation_goes_there_and_back_and_summary_rewrite_keeps_the_dialogue(tmp_path, monkeypatch):
    monkeypatch.setenv("UPSTAGE_API_KEY", KEY)

    def answer(messages):
        prompt = messages[-1]["content"]
        text = prompt.split("\n\n", 1)[1]
        if "into English" in prompt:
            return "EN|" + text
        if "into Korean" in prompt:
            return text.removeprefix("EN|").replace(".", "!")
        return "요약: " + text.replace("합니다.", "해요.")  # summary-rewrite

    with FakeChatServer(KEY, answer=answer) as server:
        cfg = load_config(REPO / "configs/demo.yaml", [
            f"llm.base_url={server.base_url}", f"llm.cache={tmp_path / 'cache.sqlite'}",
            f"general.output_dir={tmp_path}", "llm.requests_per_minute=6000", "llm.window_s=1",
            "augment.back_translation_fields=[dialogue, summary]",
        ])
        result = augment_file(cfg, "back-translation", limit=5)
        assert len(server.arrivals) == 20  # 5 rows × 2 fields × (there + back)
        rows = pd.read_csv(result.path, dtype=str, keep_default_na=False)
        assert rows.source_fname.tolist() == [src.fname for src in TRAIN[:5]]
        for row, src in zip(rows.itertuples(), TRAIN[:5]):
            assert row.fname == f"{src.fname}__back-translation"
            assert row.dialogue == "\n".join(line.strip() for line in src.dialogue.replace(".", "!").split("\n"))
            assert row.summary == src.summaries[0].replace(".", "!")

        rewrite = augment_file(cfg, "summary-rewrite", limit=5)
        rows = pd.read_csv(rewrite.path, dtype=str, keep_default_na=False)
        kept = [src for src in TRAIN[:5] if "합니다." in src.summaries[0]]  # the others came back unchanged
        assert rewrite.counts["unchanged"] == 5 - len(kept) and len(kept) >= 3
        assert rows.dialogue.tolist() == [src.dialogue for src in kept]
        assert rows.summary.tolist() == [src.summaries[0].replace("합니다.", "해요.") for src in kept]
        assert KEY.encode() not in (tmp_path / "cache.sqlite").read_bytes()


def test_unknown_method_is_a_one_line_error():
    result = run_dsum("augment", "-c", "configs/demo.yaml", "--method", "shuffle")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: unknown --method 'shuffle'; choose one of speaker-swap, aeda, turn-noise, "
        "llm-paraphrase, back-translation, summary-rewrite"
    )
