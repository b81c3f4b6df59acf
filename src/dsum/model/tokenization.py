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

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from dsum.util.errors import UserError
from dsum.data.text import TOKEN_PATTERN

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


# ---------------------------------------------------------------------------------------------------
# Decoder-only models (SOLAR, Qwen3, the tiny llama): a prompt, then the summary, then end-of-turn.
#
# The prompt is the chat template rendered with add_generation_prompt=True (or the config's plain
# template). Training examples are the same rendering with the summary as the assistant's turn; the
# loss covers what follows the prompt's ids up to and including the end-of-turn token. The mask comes
# from the prompt's *length*, never from searching the answer's ids: SOLAR tokenizes "#Person1#" alone
# as `▁#` (422) but inside the template as `#` (28771), so a search silently finds nothing.
# SOLAR's template emits no `</s>`: eos is appended, or the model never learns to stop.
# ---------------------------------------------------------------------------------------------------


def is_decoder_only(model_config) -> bool:
    return not getattr(model_config, "is_encoder_decoder", False)


_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)


@dataclass(frozen=True)
class ChatFraming:
    """How a dialogue becomes a prompt for one tokenizer and prompt config (see chat_framing)."""

    system: str
    user: str
    template_options: tuple[tuple[str, object], ...]
    plain_template: str | None
    prefix: tuple[int, ...]  # ids the tokenizer puts before any text by itself (SOLAR: `<s>`; Qwen3: none)
    end_of_turn: int  # the last id trained on: the template's end-of-turn token, else eos
    stop_ids: tuple[int, ...]  # generation stops at any of these
    pad: int

    def render(self, tokenizer, dialogue: str, answer: str | None = None) -> str:
        messages = [{"role": "system", "content": self.system}] if self.system else []
        messages.append({"role": "user", "content": self.user.replace("{dialogue}", dialogue)})
        if self.plain_template is not None:
            prompt = self.plain_template.replace("{system}", self.system).replace("{user}", messages[-1]["content"])
            return prompt if answer is None else prompt + answer
        if answer is not None:
            messages.append({"role": "assistant", "content": answer})
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=answer is None, **dict(self.template_options)
        )

    def describe(self, tokenizer) -> str:
        end = tokenizer.convert_ids_to_tokens(self.end_of_turn)
        shown = self.render(tokenizer, "{dialogue}")
        return f"decoder-only: prompt {shown!r}, labels `summary {end}` (loss on the summary and {end} only)"


def chat_framing(tokenizer, prompt_cfg) -> ChatFraming:
    """The framing of a decoder-only model: the config's prompt rendered by the tokenizer's chat template.

    prompt.chat_template replaces the tokenizer's own (and is saved with it); a tokenizer with neither
    a chat template nor prompt.plain_template is refused. The end-of-turn token is read off a rendered
    example: the first special token after the answer (Qwen3's `<|im_end|>`), else eos (SOLAR).
    """
    if prompt_cfg.chat_template is not None:
        tokenizer.chat_template = prompt_cfg.chat_template
    if not tokenizer.chat_template and prompt_cfg.plain_template is None:
        raise UserError(
            "the tokenizer has no chat template: set prompt.chat_template (a Jinja template) or "
            "prompt.plain_template (text with {system} and {user})"
        )
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError("the tokenizer has no eos token: a summary must end in one (set eos_token in its tokenizer_config.json)")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    with_specials = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    prefix = tuple(with_specials[: len(with_specials) - len(plain)]) if with_specials[-len(plain):] == plain else ()
    framing = ChatFraming(
        prompt_cfg.system, prompt_cfg.user, tuple(sorted(prompt_cfg.template_options.items())),
        None if tokenizer.chat_template else prompt_cfg.plain_template, prefix, eos, (eos,), pad,
    )
    # The end of turn: the first special token after a rendered answer, if the template writes one.
    marker = "요약 끝"
    full = framing.render(tokenizer, "대화", marker)
    after = full[full.rindex(marker) + len(marker):]
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    tail = [i for i in tokenizer(after, add_special_tokens=False)["input_ids"] if i in special]
    end_of_turn = tail[0] if tail else eos
    return ChatFraming(
        framing.system, framing.user, framing.template_options, framing.plain_template, prefix,
        end_of_turn, tuple(dict.fromkeys((end_of_turn, eos))), pad,
    )


def _ids(tokenizer, framing: ChatFraming, text: str) -> list[int]:
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    prefix = list(framing.prefix)
    return ids if prefix and ids[: len(prefix)] == prefix else prefix + ids  # a template may write `<s>` itself


def encode_prompt(tokenizer, framing: ChatFraming, dialogue: str, max_length: int) -> tuple[list[int], str, bool]:
    """(prompt ids, the dialogue as rendered, whether it was cut): the prompt fits max_length tokens.

    Only the dialogue is cut (from its end): the instructions and the template's end, where the
    answer starts, are always whole. The cut dialogue is rendered again, so its ids are exactly
    those a model sees at predict time for the same text.
    """
    ids = _ids(tokenizer, framing, framing.render(tokenizer, dialogue))
    if len(ids) <= max_length:
        return ids, dialogue, False
    dialogue_ids = tokenizer(dialogue, add_special_tokens=False, verbose=False)["input_ids"]
    room = len(dialogue_ids) - (len(ids) - max_length)
    while room > 0:
        cut = tokenizer.decode(dialogue_ids[:room], skip_special_tokens=False)
        ids = _ids(tokenizer, framing, framing.render(tokenizer, cut))
        if len(ids) <= max_length:
            return ids, cut, True
        room -= max(1, len(ids) - max_length)  # a re-tokenized seam can take a token more; cut again
    raise UserError(
        f"the prompt without any dialogue is longer than model.max_source_length={max_length} tokens: "
        "raise model.max_source_length or shorten prompt.system / prompt.user"
    )


def encode_chat_example(
    tokenizer, framing: ChatFraming, dialogue: str, summary: str, max_prompt: int, max_answer: int
) -> tuple[dict, bool, bool]:
    """One training example: (input_ids / attention_mask / labels, dialogue cut, summary cut).

    labels are -100 over the prompt; the rest is the summary as tokenized *in context* and the
    end-of-turn token, the only thing that follows it (Qwen3's newline after `<|im_end|>` is not trained).
    """
    prompt_ids, dialogue, cut_dialogue = encode_prompt(tokenizer, framing, dialogue, max_prompt)
    prompt_text = framing.render(tokenizer, dialogue)
    full_text = framing.render(tokenizer, dialogue, summary)
    if not full_text.startswith(prompt_text) or not full_text[len(prompt_text):].lstrip().startswith(summary.strip()[:20]):
        between = full_text[len(os.path.commonprefix([prompt_text, full_text])):].split(summary.strip()[:20])[0]
        raise UserError(
            f"the chat template puts {between!r} between the prompt and the answer: it would be trained on and expected "
            "at generation. Set the template's option that removes it, e.g. prompt.template_options: "
            "{enable_thinking: false} for Qwen3"
        )
    full_ids = _ids(tokenizer, framing, full_text)
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise UserError(
            "the chat template's prompt tokenizes differently once the answer follows it, so the loss mask "
            "cannot be placed: use a template whose generation prompt is a prefix of the full conversation"
        )
    answer = full_ids[len(prompt_ids):]
    ends = [k for k, i in enumerate(answer) if i in framing.stop_ids]
    answer = answer[: ends[0]] if ends else answer
    cut_summary = len(answer) + 1 > max_answer
    answer = [*answer[: max_answer - 1], framing.end_of_turn]  # always ends in end-of-turn, also when cut
    ids = prompt_ids + answer
    example = {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [-100] * len(prompt_ids) + answer}
    return example, cut_dialogue, cut_summary


def tokenize_chat_examples(tokenizer, framing: ChatFraming, sources, targets, max_prompt: int, max_answer: int) -> Features:
    rows, cut_sources, cut_targets = [], 0, 0
    for dialogue, summary in zip(sources, targets):
        row, cut_dialogue, cut_summary = encode_chat_example(tokenizer, framing, dialogue, summary, max_prompt, max_answer)
        rows.append(row)
        cut_sources += cut_dialogue
        cut_targets += cut_summary
    return Features(rows=rows, truncated_sources=cut_sources, truncated_targets=cut_targets)


class AnswerDecoder:
    """Generated continuations → summaries: cut at the first stop id, template remnants and control tokens removed.

    `#…#` tokens are ordinary text in a decoder-only model's vocabulary: decoding gives them back exactly.
    """

    def __init__(self, tokenizer, framing: ChatFraming):
        self.tokenizer, self.framing = tokenizer, framing
        self._control = re.compile("|".join(re.escape(t) for t in control_tokens(tokenizer)) or r"(?!)")

    def clean(self, text: str) -> str:
        text = _THINK_BLOCK.sub(" ", text)
        return " ".join(self._control.sub(" ", text).split())

    def __call__(self, sequences) -> list[str]:
        texts = []
        for ids in sequences:
            ids = [int(i) for i in ids]
            ends = [k for k, i in enumerate(ids) if i in self.framing.stop_ids]
            ids = ids[: ends[0]] if ends else ids
            texts.append(self.clean(self.tokenizer.decode(ids, skip_special_tokens=False)))
        return texts
