"""Batched generation sorted by length, and the clean-up of decoded summaries.

Sorting by length means each batch pads only to its own longest dialogue; the original order is
restored before returning, so outputs equal those of an unsorted loop.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch

from dsum.config import GenerationConfig
from dsum.modeling import MODEL_SPECIAL_STRINGS

_SPECIAL_RE = re.compile("|".join(re.escape(s) for s in MODEL_SPECIAL_STRINGS))


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
    """Summaries for `dialogues`, in their order, generated in length-sorted batches."""
    from tqdm.auto import tqdm

    model.eval()
    device = next(model.parameters()).device
    encoded = tokenizer(list(dialogues), truncation=True, max_length=max_source_length)["input_ids"]
    # Longest first: a memory problem shows up in the first batch, not after an hour.
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
    results: list[str] = [""] * len(encoded)
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="generate", unit="batch", disable=not progress):
        inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt").to(device)
        output = model.generate(**inputs, **generation_kwargs(gen))
        texts = tokenizer.batch_decode(output, skip_special_tokens=False)
        for index, text in zip(batch, texts):
            results[index] = clean_summary(text)
    return results
