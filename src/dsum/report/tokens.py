"""The config's tokenizer, for token lengths, built or loaded exactly as `dsum train` would.

A tiny model's tokenizer is trained on the cleaned training text with the special tokens the data
holds (found as dsum.data.splits finds them); a hub name or folder is loaded through dsum.model.tokenization, from
local files only, since the report must work offline. Lengths count the ids the model's framing adds
(dsum.model.tokenization.framing_for). When it cannot be loaded, token lengths are skipped and the
report says why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dsum.config import ModelConfig
from dsum.data.text import special_tokens_for
from dsum.model.tokenization import add_data_tokens, framing_for
from dsum.model.tokenization import load_tokenizer as load_tokenizer_files


@dataclass
class TokenizerInfo:
    name: str
    available: bool
    note: str

    def to_dict(self) -> dict:
        return {"name": self.name, "available": self.available, "note": self.note}


def load_tokenizer(model_cfg: ModelConfig, train_texts: Sequence[str], other_texts: Sequence[str], prompt=None):
    """(framing or None, TokenizerInfo): the framing dsum.model.tokenization gives this model, holding its
    tokenizer. `train_texts` (cleaned train dialogues + summaries) train a tiny tokenizer; `other_texts`
    only add the special tokens they hold, as in training. Decoder-only models (`prompt`: the config's
    PromptConfig): a dialogue counts with the prompt around it."""
    from dsum.model.loading import load_model_and_tokenizer, load_model_config
    from dsum.util.errors import UserError

    specials = special_tokens_for([*train_texts, *other_texts])
    if model_cfg.tiny is not None:
        if not train_texts:
            return None, TokenizerInfo("tiny", False, "no training text to train the tiny tokenizer on")
        # Built as `dsum train` builds it (a tiny model is cheap): the tokenizer, its data tokens, the framing.
        model, tokenizer = load_model_and_tokenizer(model_cfg, specials, train_texts, prompt=prompt)
        framing = framing_for(model.config, tokenizer, prompt)
        note = (
            f"tiny {model_cfg.tiny.architecture} tokenizer trained on the training split "
            f"(vocabulary {len(tokenizer)}), as `dsum train` builds it; {_counted(framing)}"
        )
        return framing, TokenizerInfo("tiny", True, note)
    try:
        # Local files only: the report must work offline.
        tokenizer = load_tokenizer_files(model_cfg.name, local_only=True)
        framing = framing_for(load_model_config(model_cfg, local_only=True), tokenizer, prompt)
    except UserError as exc:
        note = f"not loaded from local files ({exc}): token lengths and truncation shares are skipped"
        return None, TokenizerInfo(model_cfg.name, False, note)
    tokens = ""
    if framing.data_tokens:
        add_data_tokens(tokenizer, specials)
        tokens = f", with {len(specials)} special tokens"
    return framing, TokenizerInfo(model_cfg.name, True, f"{model_cfg.name} from local files{tokens}; {_counted(framing)}")


def _counted(framing) -> str:
    if framing.data_tokens:
        return framing.describe()
    return f"{framing.kind}: dialogue lengths include the {framing.added_ids()[0]} ids of the prompt around them"


def token_lengths(framing, texts: Sequence[str], target: bool = False,
                  advance: Callable[[int], None] = lambda n: None, batch: int = 1000) -> list[int]:
    """Token counts with the ids dsum's framing adds (<s>, </s>; a prompt), as truncation sees them.

    A fast tokenizer's Rust backend counts without building offsets or Python lists of ids."""
    around, after = framing.added_ids()
    extra = after if target else around
    tokenizer = framing.tokenizer
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
