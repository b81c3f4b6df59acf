"""A model's tokenizer, loaded the right way, and the framing of every example: the one place for both.

Train, evaluation, predict, eda and doctor all go through here, so a checkpoint sees the same ids
wherever it runs. Real hub tokenizers differ in what they add by themselves (KoBART's tokenizer.json
adds nothing, pko-t5's appends `</s>`, dsum's tiny one adds `<s> … </s>`), so dsum never relies on
a tokenizer's post-processor: texts are encoded without special tokens and framed here by hand.

The framing, per architecture (the same in training and in generation):

- BART (KoBART, the tiny demo): encoder `<s> dialogue </s>`, as BART was pre-trained; the decoder
  starts from `</s>` (KoBART's pre-training convention, gogamza/kobart-base's config; digit82's
  config names none, so transformers would use 2 = `<usr>`); labels `summary </s>`.
- T5 (pko-t5): encoder `dialogue </s>`; the decoder starts from `<pad>`; labels `summary </s>`.

Labels always end in the model's eos, also when truncated, or the model never learns to stop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from dsum.errors import UserError
from dsum.text import TOKEN_PATTERN

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

    folder = Path(name_or_path)
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(
            f"{folder} holds no tokenizer (expected one of {', '.join(TOKENIZER_FILES)}); "
            "point at a model folder such as runs/<name>/checkpoint-best"
        )
    try:
        return AutoTokenizer.from_pretrained(str(name_or_path), local_files_only=local_only)
    except OSError as exc:
        raise UserError(
            f"cannot load the tokenizer of {name_or_path!r}: {first_line(exc)} "
            "(give a local folder, a hub name reachable from here, or set model.tiny for an offline model)"
        ) from None
    except (TypeError, ValueError) as auto_error:
        try:
            return PreTrainedTokenizerFast.from_pretrained(str(name_or_path), local_files_only=local_only)
        except (OSError, TypeError, ValueError):
            raise UserError(f"cannot load the tokenizer of {name_or_path!r}: {first_line(auto_error)}") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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


@dataclass(frozen=True)
class Framing:
    """How an example becomes ids (see the module docstring); derived from the model config and tokenizer."""

    architecture: str
    source_prefix: tuple[int, ...]
    source_suffix: tuple[int, ...]
    label_suffix: tuple[int, ...]
    decoder_start: int
    eos: int
    pad: int

    def describe(self, tokenizer) -> str:
        """e.g. bart: encoder `<s> dialogue </s>`, decoder starts with `</s>`, labels `summary </s>`"""

        def tokens(ids) -> str:
            return " ".join(tokenizer.convert_ids_to_tokens(list(ids)))

        source = " ".join(filter(None, [tokens(self.source_prefix), "dialogue", tokens(self.source_suffix)]))
        start = tokenizer.convert_ids_to_tokens(self.decoder_start)
        return f"{self.architecture}: encoder `{source}`, decoder starts with `{start}`, labels `summary {tokens(self.label_suffix)}`"


def framing_for(model_config, tokenizer) -> Framing:
    """The stated framing for this model's architecture (BART-like unless the model is a T5)."""
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    if eos is None or pad is None:
        raise UserError(
            f"the tokenizer of {getattr(model_config, 'name_or_path', 'this model')} has no "
            f"{'eos' if eos is None else 'pad'} token; a summarizer needs both (its labels end in eos)"
        )
    if model_config.model_type in ("t5", "mt5", "umt5"):
        return Framing("t5", (), (eos,), (eos,), decoder_start=pad, eos=eos, pad=pad)
    bos = tokenizer.bos_token_id
    return Framing("bart", () if bos is None else (bos,), (eos,), (eos,), decoder_start=eos, eos=eos, pad=pad)


def apply_framing(model, framing: Framing) -> None:
    """Write the framing's ids into the model's config and generation config (saved with the checkpoint)."""
    ids = dict(decoder_start_token_id=framing.decoder_start, eos_token_id=framing.eos, pad_token_id=framing.pad)
    for key, value in ids.items():
        setattr(model.config, key, value)
    # The decoder starts from decoder_start alone: no forced <s> after it; eos is what ends a summary.
    model.generation_config.update(**ids, forced_bos_token_id=None, bos_token_id=None)


def _frame(tokenizer, texts: Sequence[str], prefix: tuple[int, ...], suffix: tuple[int, ...], max_length: int):
    """Encoded without the tokenizer's own special tokens, cut to fit, then prefix + ids + suffix."""
    room = max_length - len(prefix) - len(suffix)
    encoded = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    framed = [[*prefix, *ids[:room], *suffix] for ids in encoded]
    return framed, sum(len(ids) > room for ids in encoded)


def encode_sources(tokenizer, framing: Framing, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], int]:
    """Encoder ids of each text and how many were truncated to max_length."""
    return _frame(tokenizer, texts, framing.source_prefix, framing.source_suffix, max_length)


def encode_labels(tokenizer, framing: Framing, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], int]:
    """Label ids of each summary, always ending in eos, and how many were truncated to max_length."""
    return _frame(tokenizer, texts, (), framing.label_suffix, max_length)


@dataclass
class Features:
    rows: list[dict]
    truncated_sources: int
    truncated_targets: int


def tokenize_examples(tokenizer, framing: Framing, sources, targets, max_source: int, max_target: int) -> Features:
    """input_ids/attention_mask/labels per example (no padding: the collator pads per batch)."""
    source_ids, cut_sources = encode_sources(tokenizer, framing, sources, max_source)
    label_ids, cut_targets = encode_labels(tokenizer, framing, targets, max_target)
    rows = [
        {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}
        for ids, labels in zip(source_ids, label_ids)
    ]
    return Features(rows=rows, truncated_sources=cut_sources, truncated_targets=cut_targets)


def control_tokens(tokenizer) -> list[str]:
    """The tokenizer's own special tokens that are control strings (never the data's `#…#` tokens or emoji)."""
    candidates = set(tokenizer.all_special_tokens)
    candidates.update(t.content for t in tokenizer.added_tokens_decoder.values() if t.special)
    return sorted(
        (t for t in candidates if _CONTROL_SHAPE.fullmatch(t) and not TOKEN_PATTERN.fullmatch(t)),
        key=lambda t: (-len(t), t),  # longest first, so `</s>` is removed whole, never as `<` + `/s>`
    )


class SummaryDecoder:
    """Generated ids → summary text: stops at the first eos, drops the decoder start and control tokens."""

    def __init__(self, tokenizer, framing: Framing):
        self.tokenizer = tokenizer
        self.framing = framing
        self._control = re.compile("|".join(re.escape(t) for t in control_tokens(tokenizer)) or r"(?!)")

    def clean(self, text: str) -> str:
        return " ".join(self._control.sub(" ", text).split())

    def __call__(self, sequences) -> list[str]:
        texts = []
        for ids in sequences:
            ids = [int(i) for i in ids]
            if ids and ids[0] == self.framing.decoder_start:
                ids = ids[1:]
            if self.framing.eos in ids:
                ids = ids[: ids.index(self.framing.eos)]
            texts.append(self.clean(self.tokenizer.decode(ids, skip_special_tokens=False)))
        return texts


def split_data_tokens(tokenizer, tokens: Sequence[str]) -> list[str]:
    """The `#…#` tokens that the tokenizer would split into pieces (should be none after add_data_tokens)."""
    return [t for t in tokens if len(tokenizer(t, add_special_tokens=False)["input_ids"]) != 1]
