"""What every framing offers (ExampleFraming), whatever the model kind; dsum.model.tokenization picks one.

The two framings: dsum.model.framing_seq2seq (encoder input, decoder start, labels ending in eos) and
dsum.model.framing_chat (a decoder-only model's prompt, loss mask and end-of-turn).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, Sequence


@dataclass
class Features:
    rows: list[dict]
    truncated_sources: int
    truncated_targets: int


class ExampleFraming(Protocol):
    """What both framings offer; a caller never asks which kind it holds."""

    kind: ClassVar[str]  # "seq2seq" or "decoder-only", for messages
    source_name: ClassVar[str]  # what the model reads: "dialogue" (encoder) or "prompt"
    padding_side: ClassVar[str]  # of prompts in a generation batch
    data_tokens: ClassVar[bool]  # whether the data's #…# tokens are added to the vocabulary
    stop_ids: tuple[int, ...]  # generation stops at any of these
    label_end: int  # the id every label sequence ends in

    def encode_examples(self, sources, targets, max_source: int, max_target: int) -> Features: ...
    def encode_prompts(self, dialogues, max_length: int) -> tuple[list[list[int]], int]: ...
    def parts(self, row: dict) -> tuple[list[int], list[int]]: ...
    def added_ids(self) -> tuple[int, int]: ...
    def outputs(self, output, prompt_width: int) -> list[list[int]]: ...
    def stopped(self, ids: Sequence[int]) -> bool: ...
    def decode(self, sequences) -> list[str]: ...  # also self.decoder(sequences); self.decoder.clean(text)
    def clean(self, text: str) -> str: ...
    def describe(self) -> str: ...
    def apply_to(self, model) -> None: ...
