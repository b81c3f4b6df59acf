"""Which words of a prediction and its reference the board's ROUGE counts as matches, placed on the text.

The scorer (dsum.metric.rouge) joins the analyser's morphemes with spaces, cuts the result into
"sentences" on "." and splits each on spaces: those are its words. `scorer_words` makes the same
words and remembers where each one sits in the original text, so the page can highlight them there:

* unigram match: a word the other text has (ROUGE-1 counts each distinct word once);
* bigram match: a word in a pair of consecutive words the other text also has (ROUGE-2);
* LCS: the words of the longest common subsequences that ROUGE-L unites, found with the scorer's
  own tie rule (dsum.metric.rouge.lcs_pairs), sentence pair by sentence pair.

A `#PersonN#` tag is four morphemes for mecab (#, Person, 1, #): the page draws one box around them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from dsum.metric.rouge import lcs_pairs

UNIGRAM, BIGRAM, LCS, NEW = 1, 2, 4, 8  # class bits of a word; NEW: not in the dialogue (hallucination?)
_WORDS = re.compile(r"\S+")


@dataclass(frozen=True)
class Words:
    """A text's scorer words: text, [start, end) in the original text (None where a morpheme was not
    found there), and the sentence each belongs to."""

    text: str
    words: tuple[str, ...]
    spans: tuple[tuple[int, int] | None, ...]
    sentence: tuple[int, ...]

    def sentences(self) -> list[list[int]]:
        """Word indexes of each sentence, as the scorer cuts them."""
        out: list[list[int]] = []
        for i, s in enumerate(self.sentence):
            if s == len(out):
                out.append([])
            out[s].append(i)
        return out


def scorer_words(text: str, morphs: Callable[[str], list[str]]) -> Words:
    """The words the scorer sees in `text` (dsum.metric.rouge._prepare), each placed in `text`."""
    morphemes = morphs(text)
    # Where each morpheme sits in the text and in the joined string.
    places: list[int | None] = []
    cursor = 0
    for m in morphemes:
        found = text.find(m, cursor)
        places.append(None if found < 0 else found)
        if found >= 0:
            cursor = found + len(m)
    joined_start, position = [], 0
    for m in morphemes:
        joined_start.append(position)
        position += len(m) + 1
    joined = " ".join(morphemes)

    words, spans, sentence = [], [], []
    k = 0  # the morpheme that the current position of `joined` falls in
    piece_start = 0
    for piece in joined.split("."):
        if len(piece) > 0:
            n = sentence[-1] + 1 if sentence else 0
            found = list(_WORDS.finditer(piece))
            if not found:  # a whitespace-only piece is one empty word, as in the package
                words.append("")
                spans.append(None)
                sentence.append(n)
            for match in found:
                start = piece_start + match.start()
                while k + 1 < len(morphemes) and joined_start[k + 1] <= start:
                    k += 1
                base = places[k]
                offset = start - joined_start[k]
                words.append(match.group())
                spans.append(None if base is None else (base + offset, base + offset + len(match.group())))
                sentence.append(n)
        piece_start += len(piece) + 1
    return Words(text, tuple(words), tuple(spans), tuple(sentence))


def match_classes(hyp: Words, ref: Words) -> tuple[list[int], list[int]]:
    """Class bits (UNIGRAM, BIGRAM, LCS) of each word of hyp and of ref."""
    hyp_set, ref_set = set(hyp.words), set(ref.words)
    hyp_bi = set(zip(hyp.words, hyp.words[1:]))
    ref_bi = set(zip(ref.words, ref.words[1:]))
    hyp_bits = [UNIGRAM if w in ref_set else 0 for w in hyp.words]
    ref_bits = [UNIGRAM if w in hyp_set else 0 for w in ref.words]
    for words, bits, other in ((hyp.words, hyp_bits, ref_bi), (ref.words, ref_bits, hyp_bi)):
        for i, pair in enumerate(zip(words, words[1:])):
            if pair in other:
                bits[i] |= BIGRAM
                bits[i + 1] |= BIGRAM
    # ROUGE-L: as rouge._rouge_prepared, skipping a sentence pair whose common words are all united already.
    union: set[str] = set()
    for ref_sentence in ref.sentences():
        ref_words = [ref.words[i] for i in ref_sentence]
        for hyp_sentence in hyp.sentences():
            hyp_words = [hyp.words[i] for i in hyp_sentence]
            if (set(ref_words) & set(hyp_words)) <= union:
                continue
            for i, j in lcs_pairs(ref_words, hyp_words):
                union.add(ref_words[i])
                ref_bits[ref_sentence[i]] |= LCS
                hyp_bits[hyp_sentence[j]] |= LCS
    return hyp_bits, ref_bits


def marks(words: Words, bits: list[int]) -> list[list[int]]:
    """[start, end, bits] of each placed word: what the page highlights (empty words have no place)."""
    return [[span[0], span[1], b] for span, b in zip(words.spans, bits) if span is not None]


def unplaced(words: Words) -> list[str]:
    """Scorer words that could not be placed in the text (the analyser changed them)."""
    return [w for w, span in zip(words.words, words.spans) if span is None and w]
