"""The leaderboard's Korean ROUGE, reimplemented to match `rouge==1.0.1` (pltrdy) exactly.

The board is reported to score each prediction against 3 references with the pltrdy `rouge`
package on Mecab morphemes joined by single spaces, average R1/R2/RL F1 over the references, then
over rows, and show (R1 + R2 + RL) / 3 * 100 (see KNOWLEDGE.md, "The leaderboard metric").

This module reproduces that package's quirks bit for bit (checked by tests/unit/test_metric.py):

* the text is split into "sentences" on "." (pieces of length 0 dropped), each piece is
  whitespace-normalised, so a whitespace-only piece becomes the empty word "";
* words are `sentence.split(" ")`, flattened over sentences, so bigrams cross sentence ends;
* n-grams are SETS: a repeated word or bigram counts once (`exclusive=True`);
* F1 = 2 * (P * R) / (P + R + 1e-8), so identical texts score 0.999999995, not 1;
* ROUGE-L is summary level: the LCS of every (reference sentence, hypothesis sentence) pair is
  found with the package's back-tracking tie rule, the LCS words are united into one SET, and
  its size is divided by the numbers of UNIQUE words of reference (recall) and hypothesis
  (precision).

Unlike the package, an empty hypothesis (or reference) scores 0 instead of raising, and the
package is not imported here: this version is much faster (words mapped to ints, list-based DP).

The words are morphemes from a morpheme *analyser* (mecab-ko by default), not the subword pieces
of a model's tokenizer; the setting keeps its old name, `metric.tokenizer` (`dsum score
--tokenizer`, now also `--analyser`), and `get_tokenizer` / `score_texts(tokenizer=...)` remain as
aliases of `get_analyser` / `score_texts(analyser=...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from dsum.util.errors import UserError

ANALYSERS = ("mecab", "kiwi", "whitespace")
TOKENIZERS = ANALYSERS  # the old name, kept for callers
SPECIAL_STRINGS = ("<usr>", "<s>", "</s>", "<pad>")  # stripped from predictions before scoring

_EPS = 1e-8  # the package's smoothing term in every F1


def strip_special(text: str) -> str:
    """Remove the model's special strings (SPECIAL_STRINGS), collapse whitespace and strip."""
    for special in SPECIAL_STRINGS:
        # A space, not "", so that "a</s>b" does not glue two words together.
        text = text.replace(special, " ")
    return " ".join(text.split())


# --------------------------------------------------------------------------------------------
# Morpheme analysers: text -> list of morphemes


def _mecab() -> Callable[[str], list[str]]:
    try:
        import mecab_ko
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise UserError("analyser 'mecab' needs the mecab-ko package (pip install mecab-ko)") \
            from exc
    tagger = mecab_ko.Tagger()

    def morphs(text: str) -> list[str]:
        # Output is one "surface\tfeatures" line per morpheme, then "EOS" (as konlpy's
        # Mecab.morphs reads it).
        surfaces = []
        for line in tagger.parse(text).splitlines():
            if line == "EOS":
                break
            surface = line.split("\t", 1)[0]
            if surface:
                surfaces.append(surface)
        return surfaces

    return morphs


def _kiwi() -> Callable[[str], list[str]]:
    try:
        import kiwipiepy
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise UserError("analyser 'kiwi' needs the kiwipiepy package (pip install kiwipiepy)") \
            from exc
    kiwi = kiwipiepy.Kiwi()

    def morphs(text: str) -> list[str]:
        return [token.form for token in kiwi.tokenize(text)]

    return morphs


def _whitespace() -> Callable[[str], list[str]]:
    return str.split


_FACTORIES = {"mecab": _mecab, "kiwi": _kiwi, "whitespace": _whitespace}


@lru_cache(maxsize=None)
def get_analyser(name: str) -> Callable[[str], list[str]]:
    """Return the morpheme analyser called `name` (one of ANALYSERS), created once and cached."""
    factory = _FACTORIES.get(name)
    if factory is None:
        # One setting, two names: `--analyser` on the command line, metric.tokenizer in a config (both are said).
        raise UserError(
            f"unknown morpheme analyser {name!r} (--analyser, or metric.tokenizer in a config); "
            f"choose one of: {', '.join(ANALYSERS)}"
        )
    return factory()


get_tokenizer = get_analyser  # the old name, kept for callers


# --------------------------------------------------------------------------------------------
# ROUGE on one pair, the pltrdy way


@dataclass(frozen=True)
class _Prepared:
    """A text as the package sees it, with words mapped to ints."""

    sentences: tuple[list[int], ...]  # word ids of each "." piece
    sentence_sets: tuple[frozenset[int], ...]
    unigrams: frozenset[int]  # also the unique words that ROUGE-L's m / n count
    bigrams: frozenset[int]  # pairs packed as (a << 32) | b


def _prepare(joined: str, vocab: dict[str, int]) -> _Prepared | None:
    """Split `joined` (morphemes joined by spaces) like the package does; None if no sentence."""
    pieces = [" ".join(piece.split()) for piece in joined.split(".") if len(piece) > 0]
    if not pieces:
        return None
    sentences = []
    for piece in pieces:
        # split(" ") on "" gives [""]: a whitespace-only piece is one empty word, as in the package.
        sentences.append([vocab.setdefault(word, len(vocab)) for word in piece.split(" ")])
    words = [w for sentence in sentences for w in sentence]
    return _Prepared(
        sentences=tuple(sentences),
        sentence_sets=tuple(frozenset(s) for s in sentences),
        unigrams=frozenset(words),
        bigrams=frozenset((a << 32) | b for a, b in zip(words, words[1:])),
    )


def _f1(overlap: int, hyp_count: int, ref_count: int) -> float:
    # Same operations in the same order as rouge_score.f_r_p_rouge_n, so the floats are identical.
    precision = overlap / hyp_count if hyp_count else 0.0
    recall = overlap / ref_count if ref_count else 0.0
    return 2.0 * ((precision * recall) / (precision + recall + _EPS))


def lcs_pairs(x: list, y: list) -> list[tuple[int, int]]:
    """(i, j) positions of the LCS of x (reference sentence) and y (hypothesis sentence), last first.

    The package's tie rule decides WHICH LCS when several exist, and that changes the ROUGE-L
    set union, so it is kept: on a mismatch go up if table[i-1][j] > table[i][j-1], else left.
    dsum inspect highlights these same positions.
    """
    # Full DP table, one list per row of x.
    prev = [0] * (len(y) + 1)
    table = [prev]
    for xi in x:
        row = [0]
        left = 0
        for j, yj in enumerate(y):
            if xi == yj:
                left = prev[j] + 1
            else:
                up = prev[j + 1]
                if up > left:
                    left = up
            row.append(left)
        table.append(row)
        prev = row
    # Iterative back-tracking (the package recurses).
    pairs = []
    i, j = len(x), len(y)
    while i > 0 and j > 0:
        if x[i - 1] == y[j - 1]:
            pairs.append((i - 1, j - 1))
            i -= 1
            j -= 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return pairs


def _rouge_prepared(hyp: _Prepared | None, ref: _Prepared | None) -> tuple[float, float, float]:
    if hyp is None or ref is None:
        return 0.0, 0.0, 0.0
    r1 = _f1(len(hyp.unigrams & ref.unigrams), len(hyp.unigrams), len(ref.unigrams))
    r2 = _f1(len(hyp.bigrams & ref.bigrams), len(hyp.bigrams), len(ref.bigrams))

    # ROUGE-L: the package sums, over reference sentences, how much each one grows the union of
    # LCS words; that sum is just the size of the final union, whatever the order.
    union: set[int] = set()
    for ref_sentence, ref_set in zip(ref.sentences, ref.sentence_sets):
        for hyp_sentence, hyp_set in zip(hyp.sentences, hyp.sentence_sets):
            # LCS words are common words; if all of them are already in the union, skip the DP.
            if (ref_set & hyp_set) <= union:
                continue
            union.update(ref_sentence[i] for i, _ in lcs_pairs(ref_sentence, hyp_sentence))
    llcs = len(union)
    r_lcs = llcs / len(ref.unigrams)
    p_lcs = llcs / len(hyp.unigrams)
    rl = 2.0 * ((p_lcs * r_lcs) / (p_lcs + r_lcs + _EPS))
    return r1, r2, rl


def rouge_f1(hyp_words: list[str], ref_words: list[str]) -> tuple[float, float, float]:
    """(ROUGE-1, ROUGE-2, ROUGE-L) F1 of one hypothesis against one reference, as pltrdy `rouge`.

    The words are morphemes (or any units). Equal to
    `Rouge().get_scores(" ".join(hyp_words), " ".join(ref_words))[0][m]["f"]`, except that an
    empty hypothesis or reference gives (0, 0, 0) where the package raises.
    """
    vocab: dict[str, int] = {}
    hyp = _prepare(" ".join(hyp_words), vocab)
    return _rouge_prepared(hyp, _prepare(" ".join(ref_words), vocab))


# --------------------------------------------------------------------------------------------
# Scoring a set of predictions


class Analysed:
    """The board's ROUGE on texts, each distinct text analysed into morphemes once (one vocabulary).

    `row` is the one per-row rule (each F1 the mean over the row's references, not the max): `dsum
    score`, training's dev score and MBR's gold report all score rows through it.
    """

    def __init__(self, analyser: str = "mecab"):
        self.morphs = get_analyser(analyser)
        self.vocab: dict[str, int] = {}
        self.cache: dict[str, _Prepared | None] = {}

    def prepared(self, text: str) -> _Prepared | None:
        if text not in self.cache:
            self.cache[text] = _prepare(" ".join(self.morphs(text)), self.vocab)
        return self.cache[text]

    def rouge(self, hyp: str, ref: str) -> tuple[float, float, float]:
        """(ROUGE-1, ROUGE-2, ROUGE-L) F1 of `hyp` against `ref` (rouge_f1 on their morphemes)."""
        return _rouge_prepared(self.prepared(hyp), self.prepared(ref))

    def row(self, fname: str, hyp: str, refs: Sequence[str]) -> RowScore:
        """One row's F1s, each averaged over its references; `hyp` as given (strip_special is the caller's)."""
        totals = [0.0, 0.0, 0.0]
        for ref in refs:
            for k, value in enumerate(self.rouge(hyp, ref)):
                totals[k] += value
        return RowScore(fname, *(t / len(refs) for t in totals))


@dataclass(frozen=True)
class RowScore:
    """One row's F1s, each averaged over the row's references."""

    fname: str
    rouge1: float
    rouge2: float
    rougeL: float

    @property
    def score(self) -> float:
        return (self.rouge1 + self.rouge2 + self.rougeL) / 3 * 100


@dataclass(frozen=True)
class Score:
    """The leaderboard figure, (R1 + R2 + RL) / 3 * 100, with its parts and per-row scores."""

    score: float
    rouge1: float
    rouge2: float
    rougeL: float
    rows: int
    per_row: tuple[RowScore, ...]

    def to_dict(self) -> dict[str, float | int]:
        return {"score": self.score, "rouge1": self.rouge1, "rouge2": self.rouge2,
                "rougeL": self.rougeL, "rows": self.rows}


def _describe(ids: list[str]) -> str:
    shown = ", ".join(ids[:5])
    return f"{len(ids)} ({shown}{', ...' if len(ids) > 5 else ''})"


def score_texts(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    analyser: str | None = None,
    *,
    tokenizer: str | None = None,
) -> Score:
    """Score predictions against references the leaderboard's way, matching rows by fname.

    Predictions go through strip_special; every text is split into morphemes by the morpheme
    analyser named `analyser` (default mecab; `tokenizer=` is its old name, still accepted); each
    metric is averaged over a row's references (mean, not max), then over rows.
    Raises UserError when the two sides do not hold the same fnames or a row has no reference.
    """
    if analyser is not None and tokenizer is not None and analyser != tokenizer:
        raise TypeError(f"score_texts got analyser={analyser!r} and tokenizer={tokenizer!r}; pass analyser= only")
    if analyser is None:
        analyser = "mecab" if tokenizer is None else tokenizer
    missing = [f for f in references if f not in predictions]
    extra = [f for f in predictions if f not in references]
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"{_describe(missing)} fnames have references but no prediction")
        if extra:
            problems.append(f"{_describe(extra)} fnames have predictions but no reference")
        raise UserError("predictions and references do not match: " + "; ".join(problems))
    if not references:
        raise UserError("nothing to score: no rows in predictions or references")
    no_refs = [f for f, refs in references.items() if len(refs) == 0]
    if no_refs:
        raise UserError(f"{_describe(no_refs)} fnames have an empty list of references")

    analysed = Analysed(analyser)
    per_row = [analysed.row(fname, strip_special(predictions[fname]), refs) for fname, refs in references.items()]

    n = len(per_row)
    r1 = sum(r.rouge1 for r in per_row) / n
    r2 = sum(r.rouge2 for r in per_row) / n
    rl = sum(r.rougeL for r in per_row) / n
    return Score(score=(r1 + r2 + rl) / 3 * 100, rouge1=r1, rouge2=r2, rougeL=rl, rows=n,
                 per_row=tuple(per_row))
