"""Out of memory, told apart from other errors, and generation that halves its batch instead of failing.

On a GPU an allocation failure is `torch.OutOfMemoryError`; on a CPU it is a plain RuntimeError from the
allocator ("DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes"). Training's
back-off (halve the micro-batch, double the accumulation) lives in dsum.verbs.faults; generation's
(halve the batch, keep the rows done) is `in_halves` here.
"""

from __future__ import annotations

import gc
import logging
import re
from typing import Callable, Sequence

from dsum.util.errors import RunStopped

log = logging.getLogger(__name__)

OOM_EXIT = 4
_CPU = "DefaultCPUAllocator: can't allocate memory"
_SIZE = re.compile(r"(?:[Tt]ried to allocate) ([0-9.]+ ?[KMGT]?i?B|\d+ bytes)")


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and (_CPU in str(exc) or "out of memory" in str(exc).lower())


def allocation(exc: BaseException) -> str:
    """The size the failed allocation asked for, as the allocator wrote it ("2.00 GiB"), or "unknown"."""
    found = _SIZE.search(str(exc))
    return found.group(1) if found else "unknown"


def free_memory() -> None:
    """Give back what the failed attempt held, before the smaller one runs."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def out_of_memory(what: str, exc: BaseException, settings: str) -> RunStopped:
    """The one-line stop at batch 1: the memory asked for and the settings that lower it."""
    return RunStopped(
        f"out of memory {what} at batch size 1 (an allocation of {allocation(exc)} failed): {settings}; "
        "`dsum doctor -c CONFIG` estimates the memory a config needs",
        "out_of_memory", OOM_EXIT,
    )


GENERATION_SETTINGS = "lower generation.num_beams or generation.max_new_tokens or model.max_source_length"


class Halving:
    """Generation batches that halve on out of memory; later batches keep the size that worked."""

    def __init__(self):
        self.cap: int | None = None  # the largest batch known to fit since the last out of memory

    def __call__(self, run: Callable[[list[int]], list], rows: Sequence[int]) -> list:
        """run(rows) for each piece of at most `cap` rows, the outputs joined in order; on out of memory the
        piece is halved and run again (the rows already generated are kept)."""
        rows = list(rows)
        size = min(len(rows), self.cap or len(rows))
        out: list = []
        start = 0
        while start < len(rows):
            piece = rows[start : start + size]
            try:
                out += run(piece)
            except RuntimeError as exc:
                if not is_out_of_memory(exc):
                    raise
                if len(piece) == 1:
                    raise out_of_memory("in generation", exc, GENERATION_SETTINGS) from None
                free_memory()
                size = self.cap = max(1, len(piece) // 2)
                log.warning(f"out of memory generating {len(piece)} dialogues at once: batches of {size} from now on")
                continue
            start += len(piece)
        return out
