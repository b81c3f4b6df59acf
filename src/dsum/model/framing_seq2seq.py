"""The framing of a seq2seq model (KoBART, pko-t5, the tiny BART), the same in training and in generation.

- BART (KoBART, the tiny demo): encoder `<s> dialogue </s>`, as BART was pre-trained; the decoder
  starts from `</s>` (KoBART's pre-training convention, gogamza/kobart-base's config; digit82's
  config names none, so transformers would use 2 = `<usr>`); labels `summary </s>`.
- T5 (pko-t5): encoder `dialogue </s>`; the decoder starts from `<pad>`; labels `summary </s>`.

Labels always end in the model's eos, also when truncated, or the model never learns to stop.
Texts are encoded without the tokenizer's own special tokens and framed here by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar, Sequence

from dsum.model.framing import Features
from dsum.model.tokenizer import control_tokens
from dsum.util.errors import UserError


@dataclass(frozen=True)
class Framing:
    """How a seq2seq example becomes ids (see the module docstring); derived from the model config and tokenizer."""

    kind: ClassVar[str] = "seq2seq"
    source_name: ClassVar[str] = "dialogue"
    padding_side: ClassVar[str] = "right"
    data_tokens: ClassVar[bool] = True

    architecture: str
    source_prefix: tuple[int, ...]
    source_suffix: tuple[int, ...]
    label_suffix: tuple[int, ...]
    decoder_start: int
    eos: int
    pad: int
    tokenizer: object = field(default=None, compare=False, repr=False)

    @property
    def stop_ids(self) -> tuple[int, ...]:
        return (self.eos,)

    @property
    def label_end(self) -> int:
        return self.label_suffix[-1]

    def encode_examples(self, sources, targets, max_source: int, max_target: int) -> Features:
        return tokenize_examples(self.tokenizer, self, sources, targets, max_source, max_target)

    def encode_prompts(self, dialogues, max_length: int) -> tuple[list[list[int]], int]:
        """Encoder ids of each dialogue and how many were cut to max_length."""
        return encode_sources(self.tokenizer, self, dialogues, max_length)

    def parts(self, row: dict) -> tuple[list[int], list[int]]:
        """(what the model reads, what it is trained to write) of an encoded example."""
        return row["input_ids"], row["labels"]

    def added_ids(self) -> tuple[int, int]:
        """How many ids the framing adds around a dialogue and after a summary."""
        return len(self.source_prefix) + len(self.source_suffix), len(self.label_suffix)

    def outputs(self, output, prompt_width: int) -> list[list[int]]:
        """generate()'s output as lists: the decoder's ids, opening with its start token."""
        return output.tolist()

    def stopped(self, ids: Sequence[int]) -> bool:
        return self.eos in ids[1:]  # ids[0] is the decoder start (BART: `</s>`)

    @cached_property
    def decoder(self) -> SummaryDecoder:
        return SummaryDecoder(self.tokenizer, self)

    def decode(self, sequences) -> list[str]:
        return self.decoder(sequences)

    def clean(self, text: str) -> str:
        return self.decoder.clean(text)

    def describe(self) -> str:
        """e.g. bart: encoder `<s> dialogue </s>`, decoder starts with `</s>`, labels `summary </s>`"""

        def tokens(ids) -> str:
            return " ".join(self.tokenizer.convert_ids_to_tokens(list(ids)))

        source = " ".join(filter(None, [tokens(self.source_prefix), "dialogue", tokens(self.source_suffix)]))
        start = self.tokenizer.convert_ids_to_tokens(self.decoder_start)
        return f"{self.architecture}: encoder `{source}`, decoder starts with `{start}`, labels `summary {tokens(self.label_suffix)}`"

    def apply_to(self, model) -> None:
        apply_framing(model, self)


def seq2seq_framing(model_config, tokenizer) -> Framing:
    """The stated framing for this model's architecture (BART-like unless the model is a T5)."""
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    if eos is None or pad is None:
        raise UserError(
            f"the tokenizer of {getattr(model_config, 'name_or_path', 'this model')} has no "
            f"{'eos' if eos is None else 'pad'} token; a summarizer needs both (its labels end in eos)"
        )
    if model_config.model_type in ("t5", "mt5", "umt5"):
        return Framing("t5", (), (eos,), (eos,), decoder_start=pad, eos=eos, pad=pad, tokenizer=tokenizer)
    bos = tokenizer.bos_token_id
    return Framing("bart", () if bos is None else (bos,), (eos,), (eos,), decoder_start=eos, eos=eos, pad=pad, tokenizer=tokenizer)


def apply_framing(model, framing: Framing) -> None:
    """Write the framing's ids into the model's config and generation config (saved with the checkpoint)."""
    ids = dict(decoder_start_token_id=framing.decoder_start, eos_token_id=framing.eos, pad_token_id=framing.pad)
    for key, value in ids.items():
        setattr(model.config, key, value)
    # The decoder starts from decoder_start alone: no forced <s> after it; eos is what ends a summary. bos is the
    # tokenizer's, as the Trainer would otherwise align it (with a warning) before training.
    bos = getattr(framing.tokenizer, "bos_token_id", None)
    if bos is not None:
        model.config.bos_token_id = bos
    model.generation_config.update(**ids, forced_bos_token_id=None, bos_token_id=bos)


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


def tokenize_examples(tokenizer, framing: Framing, sources, targets, max_source: int, max_target: int) -> Features:
    """input_ids/attention_mask/labels per example (no padding: the collator pads per batch)."""
    source_ids, cut_sources = encode_sources(tokenizer, framing, sources, max_source)
    label_ids, cut_targets = encode_labels(tokenizer, framing, targets, max_target)
    rows = [
        {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}
        for ids, labels in zip(source_ids, label_ids)
    ]
    return Features(rows=rows, truncated_sources=cut_sources, truncated_targets=cut_targets)


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
