"""Content words (nouns, verbs, adjectives) from mecab-ko, the analyser dsum.metric.rouge scores with.

Analysing the full training set is the slowest step of the report (about 1 ms per dialogue), so
large inputs are split into chunks analysed by worker processes while the main process does other
work. This module imports nothing heavy: spawned workers start in a fraction of a second.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from functools import partial

from dsum.util.errors import UserError

# General and proper nouns, verbs, adjectives. Bound nouns (것, 수, 거) are left out: they are in
# every dialogue and say nothing about its topic.
CONTENT_TAGS = frozenset({"NNG", "NNP", "VV", "VA"})
CHUNK = 400  # texts per task sent to a worker
PARALLEL_FROM = 2000  # fewer texts are analysed in this process: starting workers would cost more

_analyser: Callable[[str], list[str]] | None = None


def content_word_analyser() -> Callable[[str], list[str]]:
    """A function text -> content words; verbs and adjectives as their 다-form (먹었어요 -> 먹다)."""
    try:
        import mecab_ko
    except ImportError:  # pragma: no cover - a dependency of the project
        raise UserError("the report needs the mecab-ko package (pip install mecab-ko)") from None
    tagger = mecab_ko.Tagger()

    def content_words(text: str) -> list[str]:
        words = []
        # One "surface\tPOS,...,expression" line per morpheme, then "EOS".
        for line in tagger.parse(text).splitlines():
            surface, _, features = line.partition("\t")
            if not features:
                continue
            fields = features.split(",")
            tags = fields[0].split("+")
            if tags[0] not in CONTENT_TAGS:
                continue
            stem = surface
            # An inflected form such as 했 (VV+EP) names its stem in the expression field:
            # "하/VV/*+았/EP/*".
            if len(tags) > 1 and len(fields) > 7 and "/" in fields[7]:
                stem = fields[7].split("/", 1)[0]
            words.append(stem + "다" if tags[0] in ("VV", "VA") else stem)
        return words

    return content_words


def analyse_chunk(texts: Sequence[str]) -> list[list[str]]:
    """Content words of each text (a worker's task; the analyser is created once per process)."""
    global _analyser
    if _analyser is None:
        _analyser = content_word_analyser()
    return [_analyser(text) for text in texts]


def default_workers() -> int:
    """One worker per CPU but one, which the main process needs for the tokenizer meanwhile; at
    most 8. On two CPUs that is one: the analysis runs in the main process (measured: spawning a
    worker there saves no time)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus - 1, 8))


def start_pool(workers: int, texts_total: int) -> Executor | None:
    """A pool of `workers` spawned processes, or None (analyse in this process) for one worker or
    a small input. Spawned, not forked: the parent already runs threads (the progress display, the
    tokenizer's). Like any spawning code, it needs the caller's script to be import-safe (an
    `if __name__ == "__main__":` guard), which the `dsum` command is."""
    if workers <= 1 or texts_total < PARALLEL_FROM:
        return None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def submit(pool: Executor | None, texts: Sequence[str]) -> list[tuple[int, Future | Callable]]:
    """Queues the texts in chunks: (chunk size, future) pairs; without a pool, (size, callable)
    pairs whose work is done when collected."""
    chunks = [list(texts[start : start + CHUNK]) for start in range(0, len(texts), CHUNK)]
    if pool is None:
        return [(len(chunk), partial(analyse_chunk, chunk)) for chunk in chunks]
    return [(len(chunk), pool.submit(analyse_chunk, chunk)) for chunk in chunks]


def collect(jobs: list[tuple[int, Future | Callable]], advance: Callable[[int], None]) -> list[list[str]]:
    """Words of every text, in order, advancing the progress bar chunk by chunk."""
    words: list[list[str]] = []
    for size, job in jobs:
        words += job.result() if isinstance(job, Future) else job()
        advance(size)
    return words
