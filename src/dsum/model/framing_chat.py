"""The framing of a decoder-only model (SOLAR, Qwen3, the tiny llama): a prompt, the summary, end-of-turn.

The prompt is the chat template rendered with add_generation_prompt=True (or the config's plain
template). Training examples are the same rendering with the summary as the assistant's turn; the
loss covers what follows the prompt's ids up to and including the end-of-turn token. The mask comes
from the prompt's *length*, never from searching the answer's ids: SOLAR tokenizes "#Person1#" alone
as `▁#` (422) but inside the template as `#` (28771), so a search silently finds nothing.
SOLAR's template emits no `</s>`: eos is appended, or the model never learns to stop.

Prompt settings the template cannot use are refused before any work (check_prompt).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import ClassVar, Sequence

from dsum.config import PromptConfig
from dsum.model.framing import Features
from dsum.model.tokenizer import control_tokens
from dsum.util.errors import UserError

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)


@dataclass(frozen=True)
class ChatFraming:
    """How a dialogue becomes a prompt for one tokenizer and prompt config (see chat_framing)."""

    kind: ClassVar[str] = "decoder-only"
    source_name: ClassVar[str] = "prompt"
    padding_side: ClassVar[str] = "left"  # every row's continuation starts at the same column
    # The vocabulary spells `#Person1#` already; new embedding rows would stay untrained under LoRA.
    data_tokens: ClassVar[bool] = False

    system: str
    user: str
    template_options: tuple[tuple[str, object], ...]
    plain_template: str | None
    prefix: tuple[int, ...]  # ids the tokenizer puts before any text by itself (SOLAR: `<s>`; Qwen3: none)
    end_of_turn: int  # the last id trained on: the template's end-of-turn token, else eos
    stop_ids: tuple[int, ...]  # generation stops at any of these
    pad: int
    tokenizer: object = field(default=None, compare=False, repr=False)

    @property
    def label_end(self) -> int:
        return self.end_of_turn

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

    def encode_examples(self, sources, targets, max_source: int, max_target: int) -> Features:
        return tokenize_chat_examples(self.tokenizer, self, sources, targets, max_source, max_target)

    def encode_prompts(self, dialogues, max_length: int) -> tuple[list[list[int]], int]:
        """Prompt ids of each dialogue and how many dialogues were cut to fit max_length."""
        encoded = [encode_prompt(self.tokenizer, self, dialogue, max_length) for dialogue in dialogues]
        return [ids for ids, _, _ in encoded], sum(cut for _, _, cut in encoded)

    def parts(self, row: dict) -> tuple[list[int], list[int]]:
        prompt_length = row["labels"].count(-100)
        return row["input_ids"][:prompt_length], row["input_ids"][prompt_length:]

    def added_ids(self) -> tuple[int, int]:
        """The prompt's ids around a dialogue (as max_source_length counts them); end-of-turn after a summary."""
        return len(_ids(self.tokenizer, self, self.render(self.tokenizer, ""))), 1

    def outputs(self, output, prompt_width: int) -> list[list[int]]:
        """generate()'s output as lists: the continuation after the (left-padded) prompts."""
        return output[:, prompt_width:].tolist()

    def stopped(self, ids: Sequence[int]) -> bool:
        return any(i in self.stop_ids for i in ids)

    @cached_property
    def decoder(self) -> AnswerDecoder:
        return AnswerDecoder(self.tokenizer, self)

    def decode(self, sequences) -> list[str]:
        return self.decoder(sequences)

    def clean(self, text: str) -> str:
        return self.decoder.clean(text)

    def describe(self) -> str:
        end = self.tokenizer.convert_ids_to_tokens(self.end_of_turn)
        shown = self.render(self.tokenizer, "{dialogue}")
        return f"decoder-only: prompt {shown!r}, labels `summary {end}` (loss on the summary and {end} only)"

    def apply_to(self, model) -> None:
        """Pad and stop ids into the model's config; dsum decodes greedily or by beams (sampling only for
        --samples, with its own settings): Qwen3's generation_config.json samples by default, and a config
        that keeps its temperature with do_sample off cannot be saved."""
        model.config.pad_token_id = self.pad
        # bos: the tokenizer's (None for most hub chat models), as the Trainer would otherwise align it with a warning.
        bos = self.tokenizer.bos_token_id
        if bos is not None:
            model.config.bos_token_id = bos
        model.generation_config.update(
            pad_token_id=self.pad, eos_token_id=list(self.stop_ids), bos_token_id=bos,
            do_sample=False, temperature=None, top_p=None, top_k=None,
        )


def check_prompt(prompt_cfg: PromptConfig, tokenizer_template) -> None:
    """Refuse prompt settings the chat template cannot use, before any work: no template and no plain one,
    template options without a template (they would be ignored), a template with a Jinja syntax error.

    `tokenizer_template`: the tokenizer's own chat template (None: it has none); prompt.chat_template replaces it.
    """
    own = prompt_cfg.chat_template is not None
    template = prompt_cfg.chat_template if own else tokenizer_template
    if not template:
        if prompt_cfg.plain_template is None:
            raise UserError(
                "the tokenizer has no chat template: set prompt.chat_template (a Jinja template) or "
                "prompt.plain_template (text with {system} and {user})"
            )
        if prompt_cfg.template_options:
            raise UserError(
                f"prompt.template_options ({', '.join(sorted(prompt_cfg.template_options))}) are options of a chat "
                "template, and the tokenizer has none (prompt.plain_template is used): remove prompt.template_options "
                "or set prompt.chat_template"
            )
        return
    if isinstance(template, str):  # (a dict of named templates, as some tokenizers hold, is left to transformers)
        fix = "fix prompt.chat_template" if own else "set prompt.chat_template to a template that works"
        check_template_syntax(template, "prompt.chat_template" if own else "the tokenizer's chat template", fix)


def check_template_syntax(template: str, where: str, fix: str) -> None:
    """Compile the template as transformers does (its sandbox and extensions); a syntax error names its line."""
    import jinja2
    from transformers.utils.chat_template_utils import _compile_jinja_template

    try:
        _compile_jinja_template(template)
    except jinja2.TemplateSyntaxError as exc:
        lines = template.splitlines()
        text = f", {lines[exc.lineno - 1].strip()[:80]!r}" if 0 < exc.lineno <= len(lines) else ""
        problem = " ".join(str(exc.message).split()).rstrip(".")
        raise UserError(f"{where} has a Jinja syntax error on line {exc.lineno}{text} ({problem}): {fix}") from None


def chat_framing(tokenizer, prompt_cfg: PromptConfig) -> ChatFraming:
    """The framing of a decoder-only model: the config's prompt rendered by the tokenizer's chat template.

    prompt.chat_template replaces the tokenizer's own (and is saved with it); a tokenizer with neither
    a chat template nor prompt.plain_template is refused (check_prompt). The end-of-turn token is read
    off a rendered example: the first special token after the answer (Qwen3's `<|im_end|>`), else eos (SOLAR).
    """
    check_prompt(prompt_cfg, tokenizer.chat_template)
    if prompt_cfg.chat_template is not None:
        tokenizer.chat_template = prompt_cfg.chat_template
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError("the tokenizer has no eos token: a summary must end in one (set eos_token in its tokenizer_config.json)")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    with_specials = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    prefix = tuple(with_specials[: len(with_specials) - len(plain)]) if with_specials[-len(plain):] == plain else ()
    framing = ChatFraming(
        prompt_cfg.system, prompt_cfg.user, tuple(sorted(prompt_cfg.template_options.items())),
        None if tokenizer.chat_template else prompt_cfg.plain_template, prefix, eos, (eos,), pad, tokenizer,
    )
    # The end of turn: the first special token after a rendered answer, if the template writes one.
    marker = "요약 끝"
    full = framing.render(tokenizer, "대화", marker)
    after = full[full.rindex(marker) + len(marker):]
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    tail = [i for i in tokenizer(after, add_special_tokens=False)["input_ids"] if i in special]
    end_of_turn = tail[0] if tail else eos
    return replace(framing, end_of_turn=end_of_turn, stop_ids=tuple(dict.fromkeys((end_of_turn, eos))))


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
