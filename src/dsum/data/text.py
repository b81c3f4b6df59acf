"""Text clean-up and special tokens (strings in, strings out: files are read and written by dsum.data.files).

The same `Normalizer` must run on training data and at inference time, so it lives here, is
deterministic, and never touches the `#...#` tokens (speaker tags and masked personal data): the
summaries refer to speakers by those tags, and the tokenizer gets them as special tokens.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dsum.util.errors import UserError

# The 15 tokens of the competition data: up to 7 speakers and 8 kinds of masked personal data.
STANDARD_SPECIAL_TOKENS: tuple[str, ...] = (
    *(f"#Person{i}#" for i in range(1, 8)),
    "#PhoneNumber#",
    "#Address#",
    "#DateOfBirth#",
    "#PassportNumber#",
    "#SSN#",
    "#CardNumber#",
    "#CarNumber#",
    "#Email#",
)

# A `#Word#` token: ASCII letter first, then letters or digits. Korean text never matches it.
TOKEN_PATTERN = re.compile(r"#[A-Za-z][A-Za-z0-9]*#")


@dataclass(frozen=True)
class Rule:
    """One clean-up step: `re.sub(pattern, replacement, text)` (replacement may use \\1 etc.)."""

    name: str
    pattern: str
    replacement: str


# Whitespace other than the newline that separates turns (space, tab, \r, no-break space...).
_WS = r"[^\S\n]"

DEFAULT_RULES: tuple[Rule, ...] = (
    # Artefacts first, so that the whitespace rules below tidy the lines they create.
    Rule("literal_newline", r"\\n", "\n"),  # the two characters backslash + n
    Rule("html_br", r"(?i)<br\s*/?>", "\n"),
    # The team's colloquial clean-up (seed guide). These are the compatibility jamo U+314B etc.,
    # which never match a full syllable such as 크 or 흐.
    Rule("laugh_k", r"ㅋ+", "웃음"),
    Rule("laugh_h", r"ㅎ+", "웃음"),
    Rule("sob", r"[ㅠㅜ]+", "슬픔"),
    # Whitespace: one space inside a line, no space at either end of a line, no empty lines.
    Rule("collapse_spaces", rf"{_WS}{{2,}}|[^\S\n ]", " "),
    Rule("strip_lines", rf"(?m)^{_WS}+|{_WS}+$", ""),
    Rule("drop_empty_lines", r"(?<=\n)\n+|\A\n+|\n+\Z", ""),
)


class Normalizer:
    """Applies rules in order to the text between `#...#` tokens.

    Safety argument: for every rule, a match that overlaps a token is put back unchanged, so the
    characters of every token survive; after each rule the list of tokens found in the text must
    be the same as before (a rule could otherwise create a token next to an existing one, e.g.
    turn "x#Person1#" into "#A#Person1#"), else a UserError names the rule. A match of a
    DEFAULT_RULE never contains '#' and always contains a character no token can hold (space,
    jamo, backslash, '<'), so it can never overlap a token: for them this is plain `re.sub`.
    """

    def __init__(self, rules: Sequence[Rule] = DEFAULT_RULES):
        self.rules = tuple(rules)
        self._compiled: list[tuple[Rule, re.Pattern[str]]] = []
        for rule in self.rules:
            try:
                compiled = re.compile(rule.pattern)
                compiled.sub(rule.replacement, "")  # parses the replacement (bad \\1 refs)
            except re.error as exc:
                raise UserError(
                    f"clean-up rule {rule.name!r} is not a valid regular expression "
                    f"({exc}): fix its pattern {rule.pattern!r} or replacement "
                    f"{rule.replacement!r}"
                ) from None
            self._compiled.append((rule, compiled))

    def __call__(self, text: str) -> str:
        return self._clean(text)[0]

    def clean_with_rules(self, text: str) -> tuple[str, set[str]]:
        """The cleaned text and the names of the rules that changed it."""
        return self._clean(text)

    def apply_with_counts(self, texts: Iterable[str]) -> tuple[list[str], dict[str, int]]:
        """Cleans every text; also returns, per rule name, how many texts that rule changed."""
        counts = {rule.name: 0 for rule in self.rules}
        out = []
        for text in texts:
            cleaned, changed = self._clean(text)
            out.append(cleaned)
            for name in changed:
                counts[name] += 1
        return out, counts

    def _clean(self, text: str) -> tuple[str, set[str]]:
        tokens = TOKEN_PATTERN.findall(text)
        changed: set[str] = set()
        for rule, compiled in self._compiled:
            new = _sub_outside_tokens(compiled, rule.replacement, text)
            if new == text:
                continue
            if TOKEN_PATTERN.findall(new) != tokens:
                raise UserError(
                    f"clean-up rule {rule.name!r} changed the #...# tokens of {text[:80]!r}: "
                    "change its pattern or replacement so that it cannot add or remove '#' "
                    "next to a token"
                )
            changed.add(rule.name)
            text = new
        return text, changed


def normalizer_from_config(data_cfg, force: bool = False) -> Normalizer | None:
    """The Normalizer a recipe's `data` section asks for (`clean`, `rules`; rules None = the
    defaults), or None when `clean` is off. `force=True` builds it even then (`dsum data
    preprocess` is asked to clean explicitly)."""
    if not (data_cfg.clean or force):
        return None
    if data_cfg.rules is None:
        return Normalizer()
    return Normalizer([Rule(r.name, r.pattern, r.replacement) for r in data_cfg.rules])


def _sub_outside_tokens(compiled: re.Pattern[str], replacement: str, text: str) -> str:
    if compiled.search(text) is None:  # the usual case: no need to locate the tokens
        return text
    spans = [m.span() for m in TOKEN_PATTERN.finditer(text)]
    if not spans:
        return compiled.sub(replacement, text)
    starts = [s for s, _ in spans]

    def repl(m: re.Match[str]) -> str:
        # The last token starting at or before the match is the only one that can overlap its
        # start; the next one overlaps if it starts before the match ends.
        i = bisect.bisect_right(starts, m.start()) - 1
        for s, e in spans[max(i, 0) : i + 2]:
            # Overlap; for an empty match this reads s < position < e (inside the token).
            if s < m.end() and m.start() < e:
                return m.group(0)
        return m.expand(replacement)

    return compiled.sub(repl, text)


def find_special_tokens(texts: Iterable[str]) -> Counter[str]:
    """Counts every `#Word#` token in the texts."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(TOKEN_PATTERN.findall(text))
    return counts


def special_tokens_for(texts: Iterable[str]) -> list[str]:
    """The 15 standard tokens, then every other token found (most frequent first, then by name)."""
    found = find_special_tokens(texts)
    extra = sorted((t for t in found if t not in STANDARD_SPECIAL_TOKENS), key=lambda t: (-found[t], t))
    return [*STANDARD_SPECIAL_TOKENS, *extra]


def text_columns(columns: Iterable[str]) -> list[str]:
    """The columns the clean-up applies to: dialogue, summary and summary1..N."""
    return [c for c in columns if c in ("dialogue", "summary") or re.fullmatch(r"summary\d+", c)]
