"""Answers that decode to nothing, generated again: the one generator (dsum.model.generate) calls this per batch.

A model can answer a dialogue with an immediate end of turn (teams saw hours of empty SOLAR outputs) or
with tokens that decode to nothing visible: whitespace, control tokens, the unused rows of a padded
embedding (the real-shaped Qwen3 stand-in, fine-tuned for a few steps, writes `\\n\\n` until
max_new_tokens). An empty summary scores zero and makes the submission fail its check, so such rows
are generated again, alone, with

- the stop ids (eos, end of turn) suppressed until MIN_NEW_TOKENS new tokens exist (generate's
  `min_new_tokens`), and
- every invisible token suppressed at the first step (generate's `begin_suppress_tokens`), so the
  answer opens with something a reader sees.

Everything else is as in the first pass (beams, penalties, banned scripts, length buckets), and rows
that were not empty are untouched. The regenerated rows, and those still empty, are counted in
GenerationStats and reported by id (report_empty).
"""

from __future__ import annotations

import logging
import weakref
from typing import Callable, Sequence

log = logging.getLogger(__name__)

# The regenerated answer has at least this many new tokens: a few words' worth.
MIN_NEW_TOKENS = 4
_SHOW = 5  # ids a message lists


def is_empty(text: str | None) -> bool:
    """A summary with nothing a reader sees (None is a row another process generates: not empty)."""
    return text is not None and not text.strip()


def empty_rows(texts: Sequence[str | None]) -> list[int]:
    return [i for i, text in enumerate(texts) if is_empty(text)]


def invisible_ids(tokenizer, clean: Callable[[str], str], vocab_size: int) -> list[int]:
    """Ids whose decoded text is nothing once the decoder has cleaned it (whitespace, control tokens, stop
    ids), and the model's output rows past the tokenizer's vocabulary (Qwen3: 151,669 tokens, 151,936 rows).

    Computed once per tokenizer and size (Qwen3's vocabulary takes about a second); only added tokens can be
    control tokens, so only they go through `clean`.
    """
    size = len(tokenizer)
    known = _INVISIBLE.setdefault(tokenizer, {})
    if (size, vocab_size) not in known:
        added = set(tokenizer.added_tokens_decoder)
        texts = [tokenizer.decode([i], skip_special_tokens=False) for i in range(size)]
        blank = [i for i, text in enumerate(texts) if not (clean(text) if i in added else text).strip()]
        known[(size, vocab_size)] = blank + list(range(size, vocab_size))
    return known[(size, vocab_size)]


# tokenizer → {(len(tokenizer), the model's vocab_size): invisible ids}
_INVISIBLE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class EmptyAnswers:
    """The per-batch hook of iter_generate: rows whose sequence decodes to nothing, generated again.

    `decode`: the generator's decoder (sequences → texts; its `.clean` tells what a token leaves visible).
    `stats`: a GenerationStats whose `regenerated` and `still_empty` collect the rows' indices.
    """

    def __init__(self, tokenizer, decode, vocab_size: int, stats=None):
        self.tokenizer, self.decode, self.vocab_size, self.stats = tokenizer, decode, vocab_size, stats
        self._invisible: list[int] | None = None  # computed at the first empty row only

    def options(self, settings: dict) -> dict:
        """generate() settings for the regenerated rows, on top of `settings` (the first pass's)."""
        if self._invisible is None:
            self._invisible = invisible_ids(self.tokenizer, self.decode.clean, self.vocab_size)
        floor = min(MIN_NEW_TOKENS, settings.get("max_new_tokens") or MIN_NEW_TOKENS)
        return {
            "min_new_tokens": max(settings.get("min_new_tokens") or 0, floor),
            "begin_suppress_tokens": self._invisible,
        }

    def __call__(self, batch: list[int], sequences: list[list[int]], generate: Callable) -> list[list[int]]:
        """`sequences` of the dialogues `batch` (indices), with the empty ones generated again by
        generate(indices, options) → their sequences (options: a function of the first pass's settings)."""
        empty = empty_rows(self.decode(sequences))
        if not empty:
            return sequences
        again = generate([batch[j] for j in empty], self.options)
        sequences = list(sequences)
        for j, ids in zip(empty, again):
            sequences[j] = ids
        if self.stats is not None:
            self.stats.regenerated += [batch[j] for j in empty]
            self.stats.still_empty += [batch[empty[k]] for k in empty_rows(self.decode(again))]
        return sequences


def report_empty(fnames: Sequence[str], regenerated: Sequence[int], still_empty: Sequence[int], max_new_tokens: int) -> None:
    """One line (a warning when some stay empty) naming the rows generated again, by id."""
    if not regenerated:
        return
    named = [fnames[i] for i in sorted(regenerated)]
    message = (
        f"{len(named)} answers were empty and were generated again with at least {min(MIN_NEW_TOKENS, max_new_tokens)} "
        f"new tokens ({_listed(named)})"
    )
    if still_empty:
        left = [fnames[i] for i in sorted(still_empty)]
        log.warning(f"{message}; {len(left)} are still empty ({_listed(left)})")
    else:
        log.info(message)


def _listed(ids: Sequence[str]) -> str:
    return ", ".join(ids[:_SHOW]) + (", ..." if len(ids) > _SHOW else "")
