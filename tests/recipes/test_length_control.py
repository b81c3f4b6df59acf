"""generation.length_control=buckets: the fitted buckets, and generation within each row's min/max new tokens."""

import json

import pytest
import torch
from conftest import REPO, TINY, tiny_overrides

from dsum.config import load_config
from dsum.data.files import read_examples
from dsum.util.errors import UserError
from dsum.model.generate import generate_summaries
from dsum.model.length_control import ATTRIBUTE, bucket_index, fit_length_buckets, limits, model_buckets, split_batches
from dsum.model.loading import load_model_and_tokenizer, load_pretrained
from dsum.data.text import special_tokens_for
from dsum.model.tokenization import encode_sources, framing_for

SAMPLE = REPO / "data" / "sample"


def test_buckets_fitted_on_a_hand_made_set():
    dialogues = list(range(1, 21))  # 1..20 tokens
    summaries = [d // 2 for d in dialogues]  # 0..10 tokens
    buckets = fit_length_buckets(dialogues, summaries, n_buckets=2, min_quantile=0.0, max_quantile=1.0, max_new_tokens=100)
    assert buckets == [
        {"upper": 10, "rows": 10, "min_new_tokens": 0, "max_new_tokens": 6},  # summaries 0..5, +1 for the eos
        {"upper": None, "rows": 10, "min_new_tokens": 5, "max_new_tokens": 11},  # summaries 5..10
    ]
    # max_new_tokens caps a bucket; its min stays below the max, so an eos always fits.
    capped = fit_length_buckets(dialogues, summaries, 2, 0.0, 1.0, max_new_tokens=5)
    assert [(b["min_new_tokens"], b["max_new_tokens"]) for b in capped] == [(0, 5), (4, 5)]
    # Quantiles inside a bucket: 4 buckets of 5 rows; the second's summaries are 3,3,4,4,5.
    quartiles = fit_length_buckets(dialogues, summaries, 4, 0.25, 0.75, 100)
    assert [b["upper"] for b in quartiles] == [5, 10, 15, None]
    assert (quartiles[1]["min_new_tokens"], quartiles[1]["max_new_tokens"]) == (3, 5)
    assert [bucket_index(buckets, n) for n in (0, 10, 11, 500)] == [0, 0, 1, 1]
    assert limits(buckets, 15) == {"min_new_tokens": 5, "max_new_tokens": 11}


def test_ties_merge_buckets_and_the_last_is_open():
    # 5 buckets asked for, but 9 of 10 dialogues are 7 tokens long: every cut is 7.
    tied = fit_length_buckets([7] * 9 + [30], [3] * 9 + [20], n_buckets=5, min_quantile=0.0, max_quantile=1.0)
    assert tied == [{"upper": 7, "rows": 9, "min_new_tokens": 3, "max_new_tokens": 4},
                    {"upper": None, "rows": 1, "min_new_tokens": 20, "max_new_tokens": 21}]
    # The median is the longest dialogue: the bucket above it would be empty, so the one below has no upper.
    top = fit_length_buckets([1, 1, 1] + [5] * 7, [2] * 10, n_buckets=2, min_quantile=0.0, max_quantile=1.0)
    assert top == [{"upper": None, "rows": 10, "min_new_tokens": 2, "max_new_tokens": 3}]


def test_batches_split_at_bucket_boundaries():
    buckets = [{"upper": 10, "min_new_tokens": 1, "max_new_tokens": 3}, {"upper": None, "min_new_tokens": 2, "max_new_tokens": 5}]
    lengths = [12, 9, 30, 10, 11, 2]
    assert split_batches([[2, 0, 4], [3, 1, 5]], lengths, buckets) == [[2, 0, 4], [3, 1, 5]]
    assert split_batches([[2, 0, 4, 3], [1, 5]], lengths, buckets) == [[2, 0, 4], [3], [1, 5]]


@pytest.mark.parametrize("eos_bias, bound", [(1e4, "min_new_tokens"), (-1e4, "max_new_tokens")])
def test_generation_respects_each_rows_bucket(eos_bias, bound):
    """An eos-loving model stops at its bucket's min (+ the eos); an eos-hating one runs to its bucket's max."""
    cfg = load_config(REPO / "configs/demo.yaml", [*TINY, "generation.length_control=buckets"])
    texts = [ex.dialogue for ex in read_examples(SAMPLE / "train.csv")][:40]
    model, tokenizer = load_model_and_tokenizer(cfg.model, special_tokens_for(texts), train_texts=texts)
    with torch.no_grad():
        model.final_logits_bias[0, model.config.eos_token_id] = eos_bias
    dialogues = [ex.dialogue for ex in read_examples(SAMPLE / "dev.csv")][:8]
    framing = framing_for(model.config, tokenizer)
    lengths = sorted(len(ids) for ids in encode_sources(tokenizer, framing, dialogues, 512)[0])
    buckets = [{"upper": lengths[3], "min_new_tokens": 3, "max_new_tokens": 6},
               {"upper": None, "min_new_tokens": 9, "max_new_tokens": 14}]
    setattr(model.generation_config, ATTRIBUTE, buckets)

    seen, original = [], model.generate

    def recording(**kwargs):
        output = original(**kwargs)
        for mask, sequence in zip(kwargs["attention_mask"], output.tolist()):
            new = sequence[1:]  # after the decoder start
            eos = model.config.eos_token_id
            seen.append((int(mask.sum()), new.index(eos) + 1 if eos in new else len(new)))
        return output

    model.generate = recording
    generate_summaries(model, tokenizer, dialogues, cfg.generation, 4, 512, progress=False)
    assert sorted(length for length, _ in seen) == lengths
    expected = [limits(buckets, length)[bound] + (1 if bound == "min_new_tokens" else 0) for length, _ in seen]
    assert [generated for _, generated in seen] == expected
    assert len(set(expected)) == 2  # both buckets were used


def test_buckets_asked_for_but_not_fitted_is_a_user_error():
    cfg = load_config(REPO / "configs/demo.yaml", [*TINY, "generation.length_control=buckets"])

    class Bare:
        generation_config = object()

    with pytest.raises(UserError, match="no fitted length buckets"):
        model_buckets(Bare(), cfg.generation)
    assert model_buckets(Bare(), load_config(REPO / "configs/demo.yaml", TINY).generation) is None


def test_training_fits_and_saves_the_buckets(tmp_path):
    from dsum.verbs.train import train

    cfg = load_config(REPO / "configs/demo.yaml", tiny_overrides(tmp_path, "training.epochs=1", "generation.length_control=buckets",
                                                                   "generation.length_buckets=4"))
    run_dir = train(cfg)
    buckets = json.loads((run_dir / "length_buckets.json").read_text())
    assert len(buckets) == 4 and sum(b["rows"] for b in buckets) == 80
    assert all(0 <= b["min_new_tokens"] < b["max_new_tokens"] <= 30 for b in buckets)
    model, _ = load_pretrained(run_dir / "checkpoint-best")  # what dsum predict loads
    assert getattr(model.generation_config, ATTRIBUTE) == buckets
