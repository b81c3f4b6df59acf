"""The one generator: batched generation sorted by length, used by training's evaluation, predict and tune.

Dialogues are framed by dsum.tokenization and outputs decoded by its SummaryDecoder (cut at eos,
control tokens dropped), at the precision training used (bf16/fp16 autocast on a GPU).

Sorting by length means each batch pads only to its own longest dialogue; the original order is
restored before returning, so outputs equal those of an unsorted loop.

With generation.batch_by_tokens (the default) batches are sized by a token budget rather than a
row count: a batch may hold as many dialogues as fit in batch_size × max_source_length source
tokens (counting each row at the batch's longest, as padded), at most MAX_BATCH_GROWTH ×
batch_size. A batch of the longest dialogues is therefore as big as a fixed batch and peaks at the
same encoder memory, while short dialogues go in bigger batches: beam search then runs fewer
generate calls, each of fuller steps, and every step's fixed cost is paid once for more rows.

Beam search with an encoder-decoder model also gets a cache that leaves the cross-attention keys
and values in place when the beams are reordered: transformers gathers them again at every step
(batch × beams × source length × width per layer), but a reorder only moves beams within one
dialogue, whose beams all hold copies of the same encoder output, so the gather changes nothing.
The self-attention cache is reordered as usual; outputs are the same (tests/test_train.py).
"""

from __future__ import annotations

import functools
from typing import Sequence

import torch

from dsum.config import GenerationConfig
from dsum.precision import autocast
from dsum.tokenization import SummaryDecoder, encode_sources, framing_for

# A token-budget batch holds at most this many times batch_size rows: the decoder's self-attention
# cache and each step's logits (rows × beams × vocab) grow with the row count, not the source length.
MAX_BATCH_GROWTH = 4


def generation_kwargs(gen: GenerationConfig) -> dict:
    return dict(
        num_beams=gen.num_beams,
        no_repeat_ngram_size=gen.no_repeat_ngram_size,
        length_penalty=gen.length_penalty,
        max_new_tokens=gen.max_new_tokens,
        early_stopping=gen.early_stopping,
    )


@functools.cache
def _cross_attention_kept_cache_class():
    from transformers.cache_utils import EncoderDecoderCache

    class CrossAttentionKeptCache(EncoderDecoderCache):
        """Beam reorders gather the self-attention cache only (see the module docstring)."""

        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            self.self_attention_cache.reorder_cache(beam_idx)

    return CrossAttentionKeptCache


def beam_search_cache(model, gen: GenerationConfig) -> dict:
    """generate() kwargs giving an encoder-decoder beam search the cross-attention-kept cache; {} otherwise."""
    settings = model.generation_config
    if gen.num_beams <= 1 or not getattr(model.config, "is_encoder_decoder", False):
        return {}
    if settings.cache_implementation is not None or settings.use_cache is False:
        return {}  # a model that asks for another cache (or none) keeps it
    from transformers.cache_utils import DynamicCache

    config = model.config.get_text_config(decoder=True)
    return {"cache": _cross_attention_kept_cache_class()(DynamicCache(config=config), DynamicCache(config=config))}


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


def generate_summaries(
    model,
    tokenizer,
    dialogues: Sequence[str],
    gen: GenerationConfig,
    batch_size: int,
    max_source_length: int,
    precision: str = "fp32",
    progress: bool = True,
    shard: tuple[int, int] = (0, 1),
) -> list[str | None]:
    """Summaries for `dialogues`, in their order, generated in length-sorted batches.

    The one generator: evaluation inside training, dsum predict and dsum tune all call it.
    Batches are token-budget batches when gen.batch_by_tokens is set (see length_batches).
    shard=(rank, world): generate only every world-th batch from rank on (None for the other rows):
    the batches are the ones one process would form, so the summaries are the same too.
    """
    from tqdm.auto import tqdm

    results: list[str | None] = [None] * len(dialogues)
    steps = iter_generate(model, tokenizer, dialogues, gen, batch_size, max_source_length, precision, shard)
    n_batches = next(steps)
    for batch, texts in tqdm(steps, total=n_batches, desc="generate", unit="batch", disable=not progress):
        for index, text in zip(batch, texts):
            results[index] = text
    return results


def iter_generate(
    model, tokenizer, dialogues: Sequence[str], gen: GenerationConfig, batch_size: int, max_source_length: int,
    precision: str = "fp32", shard: tuple[int, int] = (0, 1),
):
    """generate_summaries one batch at a time: yields the number of batches, then (indices, summaries) per batch.

    The first next() does the tokenizing and batching; each later one generates one batch.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    framing = framing_for(model.config, tokenizer)
    decode = SummaryDecoder(tokenizer, framing)
    encoded, _ = encode_sources(tokenizer, framing, dialogues, max_source_length)
    batches = length_batches([len(ids) for ids in encoded], batch_size, max_source_length, gen.batch_by_tokens)
    rank, world = shard
    batches = batches[rank::world]
    yield len(batches)
    kwargs = generation_kwargs(gen)
    try:
        for batch in batches:
            with torch.inference_mode(), autocast(precision, device):
                inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt").to(device)
                output = model.generate(**inputs, **kwargs, **beam_search_cache(model, gen))  # a fresh cache per call
            yield batch, decode(output.tolist())
    finally:
        model.train(was_training)  # evaluation inside training hands the model back in training mode
