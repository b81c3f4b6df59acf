"""The recipes on the real hub tokenizers (bundled in tests/models) and real-shaped stand-in models.

Exact ids where framing matters: KoBART's tokenizer adds neither `<s>` nor `</s>`, pko-t5's
appends `</s>` and cannot be read by AutoTokenizer; dsum frames every example itself.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest
from conftest import REPO
from standins import KOBART, PKO_T5, build_standin
from transformers import AutoConfig, AutoTokenizer

from dsum.config import load_config
from dsum.verbs.predict import predict
from dsum.data.submission import check_submission
from dsum.data.text import STANDARD_SPECIAL_TOKENS, TOKEN_PATTERN
from dsum.model.tokenization import (
    SummaryDecoder,
    add_data_tokens,
    control_tokens,
    encode_labels,
    encode_sources,
    framing_for,
    load_tokenizer,
)
from dsum.verbs.train import train

SAMPLE = REPO / "data" / "sample"
SUMMARY = "#Person2#는 기분이 좋습니다."
DIALOGUE = "#Person1#: 안녕하세요.\n#Person2#: 네, #Person1#님."


def real_tokenizer(folder):
    tokenizer = load_tokenizer(folder)
    add_data_tokens(tokenizer, STANDARD_SPECIAL_TOKENS)
    return tokenizer, framing_for(AutoConfig.from_pretrained(folder), tokenizer)


def test_kobart_labels_end_in_eos_and_encoder_is_framed():
    tokenizer, framing = real_tokenizer(KOBART)
    labels, _ = encode_labels(tokenizer, framing, [SUMMARY], 100)
    # Before: [30001, 15494, 21853, 14271, 15170] — no </s>, and a `▁는` the summary never had.
    assert labels == [[30001, 9698, 21853, 14271, 15170, 1]]
    sources, _ = encode_sources(tokenizer, framing, [DIALOGUE], 100)
    assert sources == [[0, 30000, 257, 27616, 25161, 30001, 257, 14323, 243, 30000, 9743, 245, 1]]
    assert (framing.decoder_start, framing.eos, framing.pad) == (1, 1, 3)
    # Truncated labels still end in eos: the model learns to stop even on cut summaries.
    cut, n_cut = encode_labels(tokenizer, framing, [SUMMARY], 3)
    assert cut == [[30001, 9698, 1]] and n_cut == 1


def test_pko_t5_loads_where_the_auto_class_fails():
    with pytest.raises(TypeError):
        AutoTokenizer.from_pretrained(PKO_T5)  # transformers 5 maps t5 to the Unigram-only T5Tokenizer
    tokenizer, framing = real_tokenizer(PKO_T5)
    assert len(tokenizer) == 50358 + len(STANDARD_SPECIAL_TOKENS)
    labels, _ = encode_labels(tokenizer, framing, [SUMMARY], 100)
    assert labels == [[50359, 274, 222, 1705, 262, 222, 2448, 15, 1]]
    sources, _ = encode_sources(tokenizer, framing, [DIALOGUE], 100)
    assert sources[0][0] == 50358 and sources[0][-1] == 1 and sources[0].count(1) == 1  # `dialogue </s>`, no <s>
    assert (framing.decoder_start, framing.eos, framing.pad) == (0, 1, 0)


@pytest.mark.parametrize("folder", [KOBART, PKO_T5], ids=["kobart", "pko-t5"])
def test_data_tokens_are_whole_cost_no_lone_space_and_decode_exactly(folder):
    tokenizer, framing = real_tokenizer(folder)
    dev = pd.read_csv(SAMPLE / "dev.csv")
    tag_ids = set(tokenizer.convert_tokens_to_ids(list(STANDARD_SPECIAL_TOKENS)))
    for ids in encode_sources(tokenizer, framing, list(dev.dialogue), 2000)[0]:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        assert not any(p == "▁" and nxt in tag_ids for p, nxt in zip(pieces, ids[1:]))  # KoBART's lone `▁`
    labels, _ = encode_labels(tokenizer, framing, list(dev.summary), 2000)
    decoded = SummaryDecoder(tokenizer, framing)([[framing.decoder_start, *ids] for ids in labels])
    assert decoded == [" ".join(s.split()) for s in dev.summary]  # spaces before tags restored
    for text, ids in zip(dev.summary, labels):
        assert sum(i in tag_ids for i in ids) == len(TOKEN_PATTERN.findall(text))


def test_stripped_strings_come_from_the_tokenizer():
    kobart, framing = real_tokenizer(KOBART)
    control = control_tokens(kobart)
    assert {"<s>", "</s>", "<usr>", "<sys>", "<pad>", "<unk>", "<mask>", "<unused0>", "<unused99>"} <= set(control)
    assert len(control) == 107  # ids 0..106; the 122 emoticons and emoji (107..228) are text
    assert ":-)" not in control and "😀" not in control and "#Person1#" not in control
    ids = kobart.convert_tokens_to_ids(["<usr>", "#Person2#", "<unused3>", "▁기분이", "▁좋", "<sys>", "😀", "</s>", "<pad>"])
    assert SummaryDecoder(kobart, framing)([[1, *ids]]) == ["#Person2# 기분이 좋 😀"]
    t5, t5_framing = real_tokenizer(PKO_T5)
    assert {"<extra_id_0>", "<extra_id_99>", "</s>", "<pad>"} <= set(control_tokens(t5))
    ids = t5.convert_tokens_to_ids(["<pad>", "#Person1#", "<extra_id_0>", "ëĦ¤", "</s>", "<pad>"])
    assert SummaryDecoder(t5, t5_framing)([ids]) == ["#Person1# 네"]


CONTROL = re.compile(r"<[A-Za-z_/|][^<>\s]*>")


def short_run(tmp_path, recipe: str, standin, *extra: str):
    cfg = load_config(
        REPO / "configs" / recipe,
        [
            f"model.name={standin}",
            f"general.output_dir={tmp_path / 'runs'}",
            f"data.train=[{SAMPLE / 'train.csv'}]",
            f"data.dev={SAMPLE / 'dev.csv'}",
            f"data.test={SAMPLE / 'test.csv'}",
            f"data.sample_submission={SAMPLE / 'sample_submission.csv'}",
            "training.precision=auto",
            "training.learning_rate=3e-3",
            "training.batch_size=8",
            "training.eval_batch_size=20",
            "training.epochs=4",
            "training.early_stopping_patience=null",
            "training.save_total_limit=1",
            "generation.num_beams=2",
            "generation.max_new_tokens=40",
            *extra,
        ],
    )
    return cfg, train(cfg)


@pytest.mark.parametrize(
    ("recipe", "source", "decoder_start"),
    [("kobart.yaml", KOBART, 1), ("t5.yaml", PKO_T5, 0)],
    ids=["kobart", "pko-t5"],
)
def test_recipe_end_to_end_on_a_real_shaped_stand_in(tmp_path, recipe, source, decoder_start):
    import json

    import torch

    standin = build_standin(source, tmp_path / source.name)
    cfg, run_dir = short_run(tmp_path, recipe, standin, "model.max_source_length=512")
    best = run_dir / "checkpoint-best"
    assert json.loads((best / "config.json").read_text())["decoder_start_token_id"] == decoder_start
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # One inference path: dsum predict on the run directory prints the score training recorded.
    again = predict(cfg, run_dir, "dev", tmp_path / "dev_again.csv")
    assert again["score"] == pytest.approx(metrics["dev"]["score"], abs=1e-9)
    assert check_submission(run_dir / "submission.csv", SAMPLE / "test.csv", SAMPLE / "sample_submission.csv") == []
    predictions = pd.read_csv(run_dir / "dev_predictions.csv", keep_default_na=False).prediction
    assert not any(CONTROL.search(text) for text in predictions)

    # After a short training most dev outputs stop by themselves before max_new_tokens.
    from dsum.model.loading import load_pretrained

    model, tokenizer = load_pretrained(best)
    framing = framing_for(model.config, tokenizer)
    dev = pd.read_csv(SAMPLE / "dev.csv")
    sources, _ = encode_sources(tokenizer, framing, list(dev.dialogue), 512)
    stopped = 0
    with torch.inference_mode():
        for ids in sources:
            out = model.generate(torch.tensor([ids]), max_new_tokens=40, num_beams=1, do_sample=False)[0].tolist()
            stopped += framing.eos in out[1:]
    print(f"{recipe}: {stopped}/{len(sources)} dev outputs end in eos before max_new_tokens")
    assert stopped > len(sources) // 2


@pytest.mark.parametrize(("folder", "extra"), [(KOBART, 2), (PKO_T5, 1)], ids=["kobart", "pko-t5"])
def test_eda_counts_tokens_as_training_frames_them(folder, extra):
    from dsum.config import ModelConfig
    from dsum.report.tokens import load_tokenizer as eda_tokenizer
    from dsum.report.tokens import token_lengths

    framed, info = eda_tokenizer(ModelConfig(name=str(folder)), [DIALOGUE, SUMMARY], [])
    assert info.available, info.note
    tokenizer, framing = real_tokenizer(folder)
    plain = [len(ids) for ids in tokenizer([DIALOGUE], add_special_tokens=False)["input_ids"]]
    assert token_lengths(framed, [DIALOGUE]) == [plain[0] + extra]  # <s> … </s> for KoBART, … </s> for T5
    assert token_lengths(framed, [SUMMARY], target=True) == [len(encode_labels(tokenizer, framing, [SUMMARY], 100)[0][0])]
