"""The config's tokenizer, for token lengths, built or loaded exactly as `dsum train` would.

A tiny model's tokenizer is trained on the cleaned training text with the special tokens the data
holds (as dsum.verbs.train does); a hub name or folder is loaded through dsum.model.tokenization, from local files only, since the report
must work offline. When it cannot be loaded, token lengths are skipped and the report says why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dsum.config import ModelConfig
from dsum.data.text import special_tokens_for
from dsum.model.loading import CHAT_TOKENS
from dsum.model.tokenization import Framing, add_data_tokens, chat_framing, framing_for, is_decoder_only
from dsum.model.tokenization import load_tokenizer as load_tokenizer_files


@dataclass
class TokenizerInfo:
    name: str
    available: bool
    note: str

    def to_dict(self) -> dict:
        return {"name": self.name, "available": self.available, "note": self.note}


@dataclass
class FramedTokenizer:
    """The tokenizer with the framing dsum gives examples (the ids it adds around a dialogue or a summary)."""

    tokenizer: object
    framing: Framing


def load_tokenizer(model_cfg: ModelConfig, train_texts: Sequence[str], other_texts: Sequence[str], prompt=None):
    """(FramedTokenizer or None, TokenizerInfo). `train_texts` (cleaned train dialogues + summaries)
    train a tiny tokenizer; `other_texts` only add the special tokens they hold, as in training.
    Decoder-only models (`prompt`: the config's PromptConfig): a dialogue counts with the prompt around it."""
    from dsum.util.errors import UserError
    from dsum.model.loading import load_model_config, train_tokenizer

    specials = special_tokens_for([*train_texts, *other_texts])
    if model_cfg.tiny is not None:
        if not train_texts:
            return None, TokenizerInfo("tiny", False, "no training text to train the tiny tokenizer on")
        if is_decoder_only(load_model_config(model_cfg)):
            return _decoder_only(train_tokenizer(train_texts, model_cfg.tiny, extra_special=CHAT_TOKENS), prompt, "tiny")
        tokenizer = train_tokenizer(train_texts, model_cfg.tiny)
        add_data_tokens(tokenizer, specials)
        note = (
            f"tiny {model_cfg.tiny.architecture} tokenizer trained on the training split "
            f"(vocabulary {len(tokenizer)}), as `dsum train` builds it"
        )
        return FramedTokenizer(tokenizer, framing_for(load_model_config(model_cfg), tokenizer)), TokenizerInfo("tiny", True, note)
    try:
        # Local files only: the report must work offline.
        tokenizer = load_tokenizer_files(model_cfg.name, local_only=True)
        model_config = load_model_config(model_cfg, local_only=True)
        if is_decoder_only(model_config):
            return _decoder_only(tokenizer, prompt, model_cfg.name)
        framing = framing_for(model_config, tokenizer)
    except UserError as exc:
        note = f"not loaded from local files ({exc}): token lengths and truncation shares are skipped"
        return None, TokenizerInfo(model_cfg.name, False, note)
    add_data_tokens(tokenizer, specials)
    note = f"{model_cfg.name} from local files, with {len(specials)} special tokens; {framing.describe(tokenizer)}"
    return FramedTokenizer(tokenizer, framing), TokenizerInfo(model_cfg.name, True, note)


def _decoder_only(tokenizer, prompt, name: str):
    """A decoder-only model's lengths: the prompt's ids around each dialogue (as max_source_length counts
    them), the summary plus its end-of-turn token; no data tokens added, as in training."""
    from dsum.config import PromptConfig

    chat = chat_framing(tokenizer, prompt or PromptConfig())
    around = chat.render(tokenizer, "|")
    prompt_ids = tuple(tokenizer(around.replace("|", ""), add_special_tokens=False)["input_ids"])
    framing = Framing("decoder-only", (*chat.prefix, *prompt_ids), (), (chat.end_of_turn,), chat.end_of_turn, chat.end_of_turn, chat.pad)
    note = f"{name} (decoder-only): dialogue lengths include the {len(framing.source_prefix)} ids of the prompt around them"
    return FramedTokenizer(tokenizer, framing), TokenizerInfo(name, True, note)


def token_lengths(framed: FramedTokenizer, texts: Sequence[str], target: bool = False,
                  advance: Callable[[int], None] = lambda n: None, batch: int = 1000) -> list[int]:
    """Token counts with the ids dsum's framing adds (<s>, </s>), as truncation sees them.

    A fast tokenizer's Rust backend counts without building offsets or Python lists of ids."""
    f = framed.framing
    extra = len(f.label_suffix) if target else len(f.source_prefix) + len(f.source_suffix)
    tokenizer = framed.tokenizer
    backend = tokenizer.backend_tokenizer if getattr(tokenizer, "is_fast", False) else None
    lengths: list[int] = []
    for start in range(0, len(texts), batch):
        chunk = list(texts[start : start + batch])
        if backend is not None:
            encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
            lengths += [len(encoding.ids) + extra for encoding in encode(chunk, add_special_tokens=False)]
        else:
            # verbose=False: no "longer than the maximum" warning; measuring that is the point.
            lengths += [len(ids) + extra for ids in tokenizer(chunk, add_special_tokens=False, verbose=False)["input_ids"]]
        advance(len(chunk))
    return lengths
