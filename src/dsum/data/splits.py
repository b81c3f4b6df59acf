"""A training run's examples: each split read once, and their texts as the model sees them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from dsum.config import Config
from dsum.data.files import Example, read_examples
from dsum.data.text import Normalizer, normalizer_from_config, special_tokens_for


@dataclass
class TrainData:
    """The examples of a run and their texts as the model sees them (cleaned when data.clean is on)."""

    train: list[Example]
    dev: list[Example]
    test: list[Example]
    train_sources: list[str]
    train_targets: list[str]
    dev_sources: list[str]
    normalizer: Normalizer | None
    special_tokens: list[str]


def clean_texts(texts: Sequence[str], normalizer: Normalizer | None) -> list[str]:
    return [normalizer(t) for t in texts] if normalizer else list(texts)


def load_data(cfg: Config, test: list[Example] | None = None) -> TrainData:
    """The config's train, dev and test examples; `test`: the test rows when the caller has read them already."""
    normalizer = normalizer_from_config(cfg.data)
    train_examples = [ex for path in cfg.data.train for ex in read_examples(path, require_summary=True)]
    dev_examples = read_examples(cfg.data.dev, require_summary=True)
    test_examples = read_examples(cfg.data.test) if test is None else test
    train_sources = clean_texts([ex.dialogue for ex in train_examples], normalizer)
    train_targets = clean_texts([ex.summaries[0] for ex in train_examples], normalizer)
    dev_sources = clean_texts([ex.dialogue for ex in dev_examples], normalizer)
    # The data's #…# tokens from every text of the run, test included, counted over the whole: the K
    # folds of one pool then add the same tokens in the same order, so their models share one
    # vocabulary (logit ensembles and weight averages need it).
    dev_targets = clean_texts([s for ex in dev_examples for s in ex.summaries], normalizer)
    test_sources = clean_texts([ex.dialogue for ex in test_examples], normalizer)
    specials = special_tokens_for(train_sources + train_targets + dev_sources + dev_targets + test_sources)
    return TrainData(
        train_examples, dev_examples, test_examples, train_sources, train_targets, dev_sources, normalizer, specials,
    )
