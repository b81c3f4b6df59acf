"""Summary length by dialogue length: `generation.length_control: buckets`.

Fitted on the training rows when `dsum train` starts, in the model's tokens as the model sees them
(framed and truncated dialogues; summaries without their eos):

- the buckets are cut at the quantiles 1/n, 2/n, ... of the dialogue lengths (n = length_buckets;
  ties can merge buckets, an empty one is dropped); bucket i holds the dialogues of at most
  `upper` tokens and more than the previous bucket's upper; the last bucket has no upper;
- a bucket's min new tokens = the length_min_quantile of its summaries' lengths (floored), its max
  new tokens = the length_max_quantile (ceiled) + 1 for the eos, never above generation.max_new_tokens,
  and min stays below max so an eos always fits.

The buckets travel with the model: `dsum train` stores them in the model's generation config
(`dsum_length_buckets` in checkpoint-best/generation_config.json) and writes length_buckets.json in
the run directory; evaluation, `dsum predict` and ensembles read them from the model. At generation
(dsum.model.generate) each length-sorted batch is split at bucket boundaries and generated with its
bucket's min_new_tokens / max_new_tokens, so every row gets exactly its own bucket's limits.
"""

from __future__ import annotations

import bisect
import math
from typing import Sequence

import numpy as np

from dsum.config import GenerationConfig
from dsum.util.errors import UserError

ATTRIBUTE = "dsum_length_buckets"  # the generation-config attribute the buckets are saved under


def fit_length_buckets(
    dialogue_lengths: Sequence[int], summary_lengths: Sequence[int], n_buckets: int = 10,
    min_quantile: float = 0.05, max_quantile: float = 0.95, max_new_tokens: int = 100,
) -> list[dict]:
    """[{"upper", "rows", "min_new_tokens", "max_new_tokens"}, ...], shortest dialogues first (see the module docstring)."""
    if not dialogue_lengths or len(dialogue_lengths) != len(summary_lengths):
        raise ValueError("need one summary length per dialogue length, and at least one row")
    if min_quantile > max_quantile:
        raise UserError(
            f"generation.length_min_quantile {min_quantile} is above length_max_quantile {max_quantile}; swap them"
        )
    dialogues, summaries = np.asarray(dialogue_lengths), np.asarray(summary_lengths)
    # method="lower": every cut is a length that occurs, so no bucket between two cuts is empty.
    cuts = np.unique(np.quantile(dialogues, [i / n_buckets for i in range(1, n_buckets)], method="lower"))
    uppers: list[int | None] = [int(c) for c in cuts] + [None]
    buckets, lower = [], -1
    for upper in uppers:
        inside = (dialogues > lower) & (dialogues <= upper if upper is not None else True)
        lengths = summaries[inside]
        if len(lengths) == 0:  # the last bucket when the top cut is the longest dialogue
            buckets[-1]["upper"] = None
            continue
        longest = min(max_new_tokens, math.ceil(np.quantile(lengths, max_quantile)) + 1)
        shortest = min(math.floor(np.quantile(lengths, min_quantile)), longest - 1)
        buckets.append({"upper": upper, "rows": int(len(lengths)), "min_new_tokens": max(0, shortest), "max_new_tokens": longest})
        lower = upper
    return buckets


def bucket_index(buckets: Sequence[dict], dialogue_length: int) -> int:
    """The bucket of a dialogue of this many tokens: the first whose upper is at least it."""
    uppers = [b["upper"] for b in buckets if b["upper"] is not None]
    return min(bisect.bisect_left(uppers, dialogue_length), len(buckets) - 1)


def limits(buckets: Sequence[dict], dialogue_length: int) -> dict[str, int]:
    bucket = buckets[bucket_index(buckets, dialogue_length)]
    return {"min_new_tokens": bucket["min_new_tokens"], "max_new_tokens": bucket["max_new_tokens"]}


def split_batches(batches: list[list[int]], lengths: Sequence[int], buckets: Sequence[dict]) -> list[list[int]]:
    """Each batch cut where its rows (sorted by length) change bucket: one bucket, one min/max per batch."""
    out = []
    for batch in batches:
        current, index = [], None
        for i in batch:
            b = bucket_index(buckets, lengths[i])
            if current and b != index:
                out.append(current)
                current = []
            current.append(i)
            index = b
        if current:
            out.append(current)
    return out


def model_buckets(model, gen: GenerationConfig) -> list[dict] | None:
    """The buckets saved with the model when gen.length_control is buckets; None when it is none."""
    if gen.length_control != "buckets":
        return None
    buckets = getattr(model.generation_config, ATTRIBUTE, None)
    if not buckets:
        raise UserError(
            "generation.length_control=buckets, but this model has no fitted length buckets "
            "(trained without it); set generation.length_control=none, or retrain with buckets"
        )
    return buckets


def fit_for_training(model, features_rows: Sequence[dict], gen: GenerationConfig) -> list[dict] | None:
    """train.py's hook: fit on the framed training features and attach the buckets to the model."""
    if gen.length_control != "buckets":
        return None
    buckets = fit_length_buckets(
        [len(row["input_ids"]) for row in features_rows],
        [len(row["labels"]) - 1 for row in features_rows],  # labels end in eos; max_new_tokens adds it back
        gen.length_buckets, gen.length_min_quantile, gen.length_max_quantile, gen.max_new_tokens,
    )
    setattr(model.generation_config, ATTRIBUTE, buckets)
    # A generation config marked as derived from the model config is rebuilt from it on loading, which
    # drops attributes of its own: this one is the model's own settings now (dsum train set them).
    model.generation_config._from_model_config = False
    return buckets
