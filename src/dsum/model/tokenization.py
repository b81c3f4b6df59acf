"""The framing of every example, one object per model kind, chosen once: framing_for.

Train, evaluation, predict, eda and doctor all go through here, so a checkpoint sees the same ids
wherever it runs. `framing_for(model_config, tokenizer, prompt)` is the one place that tells a seq2seq
model from a decoder-only one (is_decoder_only, which the loaders call too). Both framings offer the
same methods (dsum.model.framing.ExampleFraming): encode_examples (ids + labels for training),
encode_prompts (what generation starts from), outputs / stopped / decode (generated ids → summaries),
describe (what doctor and train print), added_ids (what eda counts around a text), apply_to (the ids
written into the model's config).

- dsum.model.tokenizer: the tokenizer loaded the right way, the data's `#…#` tokens added.
- dsum.model.framing_seq2seq: encoder input, decoder start, labels ending in eos (Framing).
- dsum.model.framing_chat: a decoder-only model's prompt, loss mask and end-of-turn (ChatFraming).

Their public names are importable from here too.
"""

from __future__ import annotations

from dsum.config import PromptConfig
from dsum.model.framing import ExampleFraming, Features
from dsum.model.framing_chat import (
    AnswerDecoder,
    ChatFraming,
    chat_framing,
    check_prompt,
    check_template_syntax,
    encode_chat_example,
    encode_prompt,
    tokenize_chat_examples,
)
from dsum.model.framing_seq2seq import (
    Framing,
    SummaryDecoder,
    apply_framing,
    encode_labels,
    encode_sources,
    seq2seq_framing,
    tokenize_examples,
)
from dsum.model.tokenizer import (
    TOKENIZER_FILES,
    add_data_tokens,
    control_tokens,
    first_line,
    load_tokenizer,
    split_data_tokens,
)

__all__ = [
    "TOKENIZER_FILES", "AnswerDecoder", "ChatFraming", "ExampleFraming", "Features", "Framing", "SummaryDecoder",
    "add_data_tokens", "apply_framing", "chat_framing", "check_prompt", "check_template_syntax", "control_tokens",
    "encode_chat_example", "encode_labels", "encode_prompt", "encode_sources", "first_line", "framing_for",
    "is_decoder_only", "load_tokenizer", "seq2seq_framing", "split_data_tokens", "tokenize_chat_examples",
    "tokenize_examples",
]


def is_decoder_only(model_config) -> bool:
    """The one test of a model's kind: decoder-only (a prompt, then the answer) or seq2seq (encoder + decoder)."""
    return not getattr(model_config, "is_encoder_decoder", False)


def framing_for(model_config, tokenizer, prompt: PromptConfig | None = None) -> Framing | ChatFraming:
    """The framing of this model's kind: seq2seq (from the architecture's ids) or decoder-only (the prompt,
    default PromptConfig(), rendered by the tokenizer's chat template). Settings it cannot use are refused."""
    if is_decoder_only(model_config):
        return chat_framing(tokenizer, prompt or PromptConfig())
    return seq2seq_framing(model_config, tokenizer)
