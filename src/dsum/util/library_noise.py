"""What the libraries print that says nothing to a dsum user: hidden unless `dsum -v` (set_verbosity("verbose")).

Two kinds, each kept short and explained:

- progress bars of transformers and huggingface_hub ("Loading weights", "Writing model shards", downloads):
  dsum shows its own progress (dsum.util.progress, dsum.verbs.train_progress);
- Python warnings the libraries raise about each other, or about what dsum already says in its own words
  (NOISE below), and their log records of that kind (LOG_NOISE). Warnings dsum causes are fixed where they
  arise, not listed here.

The bars: huggingface_hub reads HF_HUB_DISABLE_PROGRESS_BARS when it is imported and transformers asks it at
its own import, so the variable is set (when the user has not set it: theirs wins) before either is imported;
DSUM_HID_HF_BARS remembers that dsum set it, so `-v` can take it back. Child processes (tune workers, torchrun
ranks) inherit both with DSUM_VERBOSITY.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

BARS_ENV = "HF_HUB_DISABLE_PROGRESS_BARS"
MARK_ENV = "DSUM_HID_HF_BARS"

# (start of the message, category, why it is hidden)
NOISE = [
    # peft reads the model's deprecated `is_gradient_checkpointing` when it wraps or loads an adapter: a note from
    # transformers to peft's authors, raised on every LoRA train, predict and export.
    (r"`is_gradient_checkpointing` is deprecated", FutureWarning),
    # lora.modules_to_save holds an embedding tied to the output layer: dsum says what that means in one line
    # (dsum.model.loading.wrap_lora) when the adapter is made, not on every load.
    (r"Model has `tie_word_embeddings=True` and a tied layer is part of the adapter", UserWarning),
    # export --merge of such an adapter: the merged model keeps the trained input embeddings apart from the output
    # layer (dsum export says so in its own line).
    (r"Input and output embeddings are no longer tied after merging", UserWarning),
]

# (logger, start of the message): log records of the libraries that say nothing to a user, shown only under -v.
LOG_NOISE = [
    # The Trainer orders checkpoints by modification time and says so when two were saved within a second (a quick
    # run); it then orders them by step, which is right either way.
    ("transformers.trainer_utils", "mtime may not be reliable"),
]

_installed: list[tuple] = []
_shown = {"log noise": False}


class DropNoise(logging.Filter):
    """Drops a logger's records that start with one of `starts`, unless verbose."""

    def __init__(self, starts: tuple[str, ...]):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return _shown["log noise"] or not str(record.msg).startswith(self.starts)


for _name in dict.fromkeys(name for name, _ in LOG_NOISE):
    logging.getLogger(_name).addFilter(DropNoise(tuple(start for name, start in LOG_NOISE if name == _name)))


def apply(level: str) -> None:
    """Hide (quiet, normal) or show (verbose) the libraries' bars and NOISE warnings; quiet hides every Python
    warning (the libraries'; dsum's own warnings are log records, shown under -q too)."""
    show = level == "verbose"
    _shown["log noise"] = show
    hide_bars(not show)
    for entry in _installed:
        if entry in warnings.filters:
            warnings.filters.remove(entry)
    _installed.clear()
    if level == "quiet":  # no library output at all: dsum's own warnings go through its logger, not here
        warnings.simplefilter("ignore")
        _installed.append(warnings.filters[0])
    elif not show:
        for message, category in NOISE:
            warnings.filterwarnings("ignore", message=message, category=category)
            _installed.append(warnings.filters[0])
        warnings._filters_mutated()  # noqa: SLF001 - what filterwarnings itself calls after a change


def hide_bars(hide: bool) -> None:
    ours = os.environ.get(MARK_ENV) == "1"
    if BARS_ENV not in os.environ or ours:  # the user's own setting is left alone
        if hide:
            os.environ[BARS_ENV], os.environ[MARK_ENV] = "1", "1"
        else:
            os.environ.pop(BARS_ENV, None)
            os.environ.pop(MARK_ENV, None)
    if "huggingface_hub" in sys.modules:  # imported already: it read the variable; tell it directly
        import importlib

        hub_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")  # the module (the package's `tqdm` is the class)

        if ours and not hide:
            hub_tqdm.HF_HUB_DISABLE_PROGRESS_BARS = None  # it read dsum's own earlier setting: taken back for -v
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "cannot enable/disable: the variable has priority" (the user's)
            (hub_tqdm.disable_progress_bars if hide else hub_tqdm.enable_progress_bars)()
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (transformers_logging.disable_progress_bar if hide else transformers_logging.enable_progress_bar)()
