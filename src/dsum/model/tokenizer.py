"""A model's tokenizer, loaded the right way, with the data's `#…#` tokens added as single tokens.

Real hub tokenizers differ in what they add by themselves (KoBART's tokenizer.json adds nothing,
pko-t5's appends `</s>`, dsum's tiny one adds `<s> … </s>`): dsum never relies on a tokenizer's
post-processor; dsum.model.tokenization frames every example by hand.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from dsum.data.text import TOKEN_PATTERN
from dsum.util.errors import UserError, first_line
from dsum.util.hub import ask_hub_first, load_problem

# A control token: `<s>`, `<usr>`, `<unused7>`, `<extra_id_0>`, `<|im_end|>`, `[CLS]`. KoBART also marks
# 122 emoticons and emoji (`:-)`, `😀`, ids 107-228) as special: they are text and stay in outputs.
_CONTROL_SHAPE = re.compile(r"<[A-Za-z_/|][^<>\s]*>|\[[A-Z_]+\]")
# Files a folder must hold for each half of a model.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model")


def load_tokenizer(name_or_path: str | Path, local_only: bool = False):
    """AutoTokenizer, or the generic fast class when the auto class cannot read the tokenizer.json.

    transformers 5 maps t5 to the Unigram-only T5Tokenizer, which fails on pko-t5's byte-level BPE
    ("'dict' object is not an instance of 'Sequence'"); PreTrainedTokenizerFast reads any tokenizer.json.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from dsum.model.gguf import local_model

    name_or_path = local_model(name_or_path)  # a .gguf file: its converted folder (dsum.model.gguf)
    folder = Path(name_or_path)
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(
            f"{folder} holds no tokenizer (expected one of {', '.join(TOKENIZER_FILES)}); "
            "point at a model folder such as runs/<name>/checkpoint-best"
        )
    ask_hub_first(str(name_or_path))
    try:
        return AutoTokenizer.from_pretrained(str(name_or_path), local_files_only=local_only)
    except OSError as exc:
        raise UserError(
            f"cannot load the tokenizer of {name_or_path!r}: {load_problem(str(name_or_path), exc)} "
            "(give a local folder, a hub name reachable from here, or set model.tiny for an offline model)"
        ) from None
    except (TypeError, ValueError) as auto_error:
        try:
            return PreTrainedTokenizerFast.from_pretrained(str(name_or_path), local_files_only=local_only)
        except (OSError, TypeError, ValueError):
            raise UserError(f"cannot load the tokenizer of {name_or_path!r}: {first_line(auto_error)}") from None


def _metaspace(tokenizer):
    """The tokenizer's Metaspace pre-tokenizer (SentencePiece-style `▁` words, e.g. KoBART), or None."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = backend.pre_tokenizer if backend is not None else None
    return pre if type(pre).__name__ == "Metaspace" else None


def add_data_tokens(tokenizer, tokens: Sequence[str]) -> list[str]:
    """Add the data's `#…#` tokens as single tokens; returns the ones that were new.

    They are ordinary added tokens, not special ones: `skip_special_tokens` must never drop a speaker.
    With a Metaspace tokenizer (KoBART) the space before a tag would become a lone `▁` piece and the
    word after it would get a `▁` it never had; so the tag absorbs the space before it (lstrip), only
    the text's first word gets a `▁` (prepend_scheme "first"), and the decoder puts the space back.
    Both settings are saved with the tokenizer, so a checkpoint tokenizes as training did.
    """
    from tokenizers import AddedToken, decoders

    vocab = tokenizer.get_vocab()
    new = [token for token in dict.fromkeys(tokens) if token not in vocab]
    if not new:
        return []
    metaspace = _metaspace(tokenizer)
    tokenizer.add_tokens([AddedToken(t, lstrip=metaspace is not None, normalized=False, special=False) for t in new])
    if metaspace is not None:
        backend = tokenizer.backend_tokenizer
        metaspace.prepend_scheme = "first"
        backend.pre_tokenizer = metaspace
        restore_space = [decoders.Replace(token, metaspace.replacement + token) for token in new]
        backend.decoder = decoders.Sequence([*restore_space, backend.decoder])
    return new


def control_tokens(tokenizer) -> list[str]:
    """The tokenizer's own special tokens that are control strings (never the data's `#…#` tokens or emoji)."""
    candidates = set(tokenizer.all_special_tokens)
    candidates.update(t.content for t in tokenizer.added_tokens_decoder.values() if t.special)
    return sorted(
        (t for t in candidates if _CONTROL_SHAPE.fullmatch(t) and not TOKEN_PATTERN.fullmatch(t)),
        key=lambda t: (-len(t), t),  # longest first, so `</s>` is removed whole, never as `<` + `/s>`
    )


def split_data_tokens(tokenizer, tokens: Sequence[str]) -> list[str]:
    """The `#…#` tokens that the tokenizer would split into pieces (should be none after add_data_tokens)."""
    return [t for t in tokens if len(tokenizer(t, add_special_tokens=False)["input_ids"]) != 1]
