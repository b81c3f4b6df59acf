"""Is the data Korean (data.language)? Is a summary? And the tokens that would write another script
(generation.korean_only).

The Hangul checks apply to Korean data only: English DialogSum would report every summary as "mostly not
in Hangul". data.language names the language, or `auto` detects it from the dialogues (is_korean_data).

LLMs fine-tuned for an epoch or two answer some dialogues in English or Chinese (27% of test rows for
one SOLAR team). The data's `#…#` tokens (#Person1#, #PhoneNumber#) are Latin by design: they are
left out of the count and stay allowed when other scripts are banned.
"""

from __future__ import annotations

from typing import Sequence

from dsum.data.text import TOKEN_PATTERN

# data.language=auto decides from this many dialogues.
DETECT_ROWS = 200


def is_hangul(char: str) -> bool:
    return "\uac00" <= char <= "\ud7a3" or "\u1100" <= char <= "\u11ff" or "\u3130" <= char <= "\u318f"


def hangul_share(text: str) -> float:
    """Share of Hangul among the letters of `text`, `#…#` tokens left out (1.0 when there are no letters)."""
    letters = [c for c in TOKEN_PATTERN.sub(" ", text) if c.isalpha()]
    return sum(map(is_hangul, letters)) / len(letters) if letters else 1.0


def is_korean_data(language: str, dialogues: Sequence[str]) -> bool:
    """data.language is ko, or auto and at least half the letters of the dialogues are Hangul.

    auto reads the first DETECT_ROWS dialogues (#…# tokens left out): the data's language, not a row's.
    """
    if language != "auto":
        return language == "ko"
    return hangul_share(" ".join(dialogues[:DETECT_ROWS])) >= 0.5


def data_is_korean(data_cfg) -> bool:
    """is_korean_data for a config's data section, auto reading the dev dialogues (then the first training
    file's); a file that cannot be read decides nothing and the data counts as Korean, dsum's default."""
    from dsum.data.files import read_examples
    from dsum.util.errors import UserError

    if data_cfg.language != "auto":
        return data_cfg.language == "ko"
    for path in (data_cfg.dev, *data_cfg.train[:1]):
        try:
            return is_korean_data("auto", [ex.dialogue for ex in read_examples(path)[:DETECT_ROWS]])
        except UserError:
            continue
    return True


def mostly_not_hangul(text: str) -> bool:
    """Fewer than half of the letters are Hangul: an answer in English, Chinese, ... (or empty of Korean)."""
    return hangul_share(text) < 0.5


def foreign_script_ids(tokenizer, data_tokens: Sequence[str]) -> list[int]:
    """Ids of tokens whose text holds a letter that is not Hangul: banned when generation.korean_only regenerates.

    The pieces of the data's `#…#` tokens stay allowed (SOLAR writes #Person1# as `#`, `Person`, `1`, `#`),
    and so do special tokens (the end of turn must remain possible). Latin names (Jim) are banned too, in
    the rows regenerated only: those rows were mostly not Korean to begin with.
    """
    allowed = {i for token in data_tokens for i in tokenizer(token, add_special_tokens=False)["input_ids"]}
    allowed |= set(tokenizer.all_special_ids)
    return [i for i in range(len(tokenizer)) if i not in allowed and _foreign(tokenizer, i)]


def _foreign(tokenizer, token_id: int) -> bool:
    text = tokenizer.decode([token_id])
    return any(char.isalpha() and not is_hangul(char) for char in text)
