"""The config's tokenizer, for token lengths, built or loaded exactly as `dsum train` would.

A tiny model's tokenizer is trained on the cleaned training text with the special tokens the data
holds (as dsum.train does); a hub name or folder is loaded from local files only, since the report
must work offline. When it cannot be loaded, token lengths are skipped and the report says why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dsum.config import ModelConfig
from dsum.text import special_tokens_for


@dataclass
class TokenizerInfo:
    name: str
    available: bool
    note: str

    def to_dict(self) -> dict:
        return {"name": self.name, "available": self.available, "note": self.note}


def load_tokenizer(model_cfg: ModelConfig, train_texts: Sequence[str], other_texts: Sequence[str]):
    """(tokenizer or None, TokenizerInfo). `train_texts` (cleaned train dialogues + summaries)
    train a tiny tokenizer; `other_texts` only add the special tokens they hold, as in training."""
    specials = special_tokens_for([*train_texts, *other_texts])
    if model_cfg.tiny is not None:
        from dsum.modeling import train_tokenizer

        if not train_texts:
            return None, TokenizerInfo("tiny", False, "no training text to train the tiny tokenizer on")
        tokenizer = train_tokenizer(train_texts, model_cfg.tiny, specials)
        note = (
            f"tiny {model_cfg.tiny.architecture} tokenizer trained on the training split "
            f"(vocabulary {len(tokenizer)}), as `dsum train` builds it"
        )
        return tokenizer, TokenizerInfo("tiny", True, note)

    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_cfg.name, local_files_only=True)
    except (OSError, ValueError) as exc:  # not in the local cache / not a tokenizer folder
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        note = f"not loaded from local files ({reason}): token lengths and truncation shares are skipped"
        return None, TokenizerInfo(model_cfg.name, False, note)
    missing = [t for t in specials if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    note = f"{model_cfg.name} from local files, with {len(specials)} special tokens"
    return tokenizer, TokenizerInfo(model_cfg.name, True, note)


def token_lengths(tokenizer, texts: Sequence[str], target: bool = False,
                  advance: Callable[[int], None] = lambda n: None, batch: int = 1000) -> list[int]:
    """Token counts with the special tokens the model adds (<s>, </s>), as truncation sees them.

    A fast tokenizer's Rust backend counts without building offsets or Python lists of ids (the
    same counts: a target-side template differs from the source one in which tokens it adds, not
    how many)."""
    backend = tokenizer.backend_tokenizer if getattr(tokenizer, "is_fast", False) else None
    lengths: list[int] = []
    for start in range(0, len(texts), batch):
        chunk = list(texts[start : start + batch])
        if backend is not None:
            encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
            lengths += [len(encoding.ids) for encoding in encode(chunk, add_special_tokens=True)]
        else:
            # verbose=False: no "longer than the maximum" warning; measuring that is the point.
            key = "text_target" if target else "text"
            lengths += [len(ids) for ids in tokenizer(**{key: chunk}, verbose=False)["input_ids"]]
        advance(len(chunk))
    return lengths
