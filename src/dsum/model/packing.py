"""Packing (`training.packing: true`, decoder-only): several examples in one training row, no padding between them.

A row holds whole examples, at most `max_len` tokens (model.max_source_length + model.max_target_length), filled
best-fit-decreasing (the longest example first, each into the fullest row it still fits; TRL's "bfd"). Each
example's `position_ids` restart at 0, and the batch carries NO attention mask and `use_cache=False`: then
transformers (5.x, sdpa, eager and flash attention) reads the restarts as sequence boundaries and builds a
block-diagonal causal mask, so an example attends only to itself (tests/unit/test_packing.py: its logits equal
its logits alone). With any attention mask, or a cache, that check is skipped silently and examples attend to
each other. The first label of every example is -100: in the causal shift it would be predicted from the end
of the previous example (it is prompt anyway: a prompt is never a label).

Rows of one batch are padded on the right to the longest; the padding is one more "sequence" (positions from 0,
labels -100) that comes after every real token, so causal attention never lets a real token see it.
"""

from __future__ import annotations

import bisect

import torch

IGNORE = -100


def pack_rows(rows: list[dict], max_len: int) -> list[dict]:
    """Whole examples (input_ids, labels) into rows of at most `max_len` tokens, best fit decreasing.

    Each packed row: input_ids, labels (each example's first label -100) and position_ids (0.. per example).
    Examples keep their order inside a row by length (longest first); every example appears exactly once.
    """
    order = sorted(range(len(rows)), key=lambda i: (-len(rows[i]["input_ids"]), i))
    bins: list[list[int]] = []  # example indices of each packed row
    free: list[tuple[int, int]] = []  # (space left, bin index), sorted: the best fit is the first with enough space
    for i in order:
        size = len(rows[i]["input_ids"])
        if size > max_len:
            raise ValueError(f"an example of {size} tokens does not fit a packed row of {max_len}")
        k = bisect.bisect_left(free, (size, -1))
        if k < len(free):
            space, b = free.pop(k)
        else:
            space, b = max_len, len(bins)
            bins.append([])
        bins[b].append(i)
        bisect.insort(free, (space - size, b))
    return [concatenate([rows[i] for i in members]) for members in bins]


def concatenate(examples: list[dict]) -> dict:
    """One packed row from examples: ids and labels end to end, positions restarting at 0 for each."""
    input_ids, labels, position_ids = [], [], []
    for example in examples:
        ids = list(example["input_ids"])
        input_ids += ids
        labels += [IGNORE] + list(example["labels"][1:])
        position_ids += range(len(ids))
    return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}


class PackedCollator:
    """Batches of packed rows: right padding (pad id, labels -100, positions 0..), no attention mask, cache off."""

    def __init__(self, pad_token_id: int, multiple: int | None = None):
        self.pad_token_id, self.multiple = pad_token_id, multiple

    def __call__(self, rows: list[dict]) -> dict:
        width = max(len(row["input_ids"]) for row in rows)
        if self.multiple:
            width = -(-width // self.multiple) * self.multiple
        batch = {"input_ids": [], "labels": [], "position_ids": []}
        for row in rows:
            pad = width - len(row["input_ids"])
            batch["input_ids"].append(list(row["input_ids"]) + [self.pad_token_id] * pad)
            batch["labels"].append(list(row["labels"]) + [IGNORE] * pad)
            batch["position_ids"].append(list(row["position_ids"]) + list(range(pad)))
        tensors: dict = {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}
        tensors["use_cache"] = False  # a cache makes transformers skip the packed-sequence check
        return tensors


def packing_problem(model) -> str | None:
    """Why this model cannot train on packed rows (None: it can): its attention must read sequence boundaries
    from position_ids (sdpa, eager, flash attention)."""
    config = getattr(model, "config", None)
    attention = getattr(config, "_attn_implementation", None) or "sdpa"
    if attention not in ("sdpa", "eager", "flash_attention_2", "flash_attention_3"):
        return f"training.packing needs sdpa, eager or flash attention; the model uses {attention}"
    return None
