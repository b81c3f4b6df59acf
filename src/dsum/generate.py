"""Batched generation sorted by length, and the clean-up of decoded summaries.

Sorting by length means each batch pads only to its own longest dialogue; the original order is
restored before returning, so outputs equal those of an unsorted loop.

With generation.batch_by_tokens (the default) batches are sized by a token budget rather than a
row count: a batch may hold as many dialogues as fit in batch_size × max_source_length source
tokens (counting each row at the batch's longest, as padded), at most MAX_BATCH_GROWTH ×
batch_size. A batch of the longest dialogues is therefore as big as a fixed batch and peaks at the
same encoder memory, while short dialogues go in bigger batches: beam search then runs fewer
generate calls, each of fuller steps, and every step's fixed cost is paid once for more rows.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch

from dsum.config import GenerationConfig
from dsum.modeling import MODEL_SPECIAL_STRINGS

_SPECIAL_RE = re.compile("|".join(re.escape(s) for s in MODEL_SPECIAL_STRINGS))
# A token-budget batch holds at most this many times batch_size rows: the decoder's self-attention
# cache and each step's logits (rows × beams × vocab) grow with the row count, not the source length.
MAX_BATCH_GROWTH = 4


def clean_summary(text: str) -> str:
    """Drop model special strings (<s>, </s>, <pad>, <usr>, ...) and collapse whitespace."""
    return " ".join(_SPECIAL_RE.sub(" ", text).split())


def generation_kwargs(gen: GenerationConfig) -> dict:
    return dict(
        num_beams=gen.num_beams,
        no_repeat_ngram_size=gen.no_repeat_ngram_size,
        length_penalty=gen.length_penalty,
        max_new_tokens=gen.max_new_tokens,
        early_stopping=gen.early_stopping,
    )


def length_batches(
    lengths: Sequence[int], batch_size: int, max_source_length: int, by_tokens: bool = True
) -> list[list[int]]:
    """Indices grouped into batches, longest dialogues first.

    Fixed batches hold batch_size rows. Token-budget batches (by_tokens) hold as many rows as fit
    in batch_size × max_source_length tokens at the batch's longest (its first row, as the order
    is longest first), never fewer than batch_size and at most MAX_BATCH_GROWTH × batch_size.
    """
    # Longest first: a memory problem shows up in the first batch, not after an hour.
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    budget, cap = batch_size * max_source_length, MAX_BATCH_GROWTH * batch_size
    batches, start = [], 0
    while start < len(order):
        size = batch_size
        if by_tokens:
            size = min(cap, max(batch_size, budget // max(1, lengths[order[start]])))
        batches.append(order[start : start + size])
        start += size
    return batches


@torch.inference_mode()
def generate_summaries(
    model,
    tokenizer,
    dialogues: Sequence[str],
    gen: GenerationConfig,
    batch_size: int,
    max_source_length: int,
    progress: bool = True,
) -> list[str]:
    """Summaries for `dialogues`, in their order, generated in length-sorted batches.

    Batches are token-budget batches when gen.batch_by_tokens is set (see length_batches).
    """
    from tqdm.auto import tqdm

    model.eval()
    device = next(model.parameters()).device
    encoded = tokenizer(list(dialogues), truncation=True, max_length=max_source_length)["input_ids"]
    results: list[str] = [""] * len(encoded)
    batches = length_batches([len(ids) for ids in encoded], batch_size, max_source_length, gen.batch_by_tokens)
    for batch in tqdm(batches, desc="generate", unit="batch", disable=not progress):
        inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt").to(device)
        output = model.generate(**inputs, **generation_kwargs(gen))
        texts = tokenizer.batch_decode(output, skip_special_tokens=False)
        for index, text in zip(batch, texts):
            results[index] = clean_summary(text)
    return results
