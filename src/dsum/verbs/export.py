"""`dsum export`: a checkpoint as a plain model folder that other tools load with from_pretrained.

A LoRA checkpoint holds only the adapters; --merge loads the base in full precision (merging into
4-bit weights would round the update away), adds each adapter's update to its layer
(peft's merge_and_unload) and saves one ordinary model with the tokenizer.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dsum.util.atomic import check_new_folder, new_folder
from dsum.util.errors import UserError
from dsum.model.loading import is_adapter, load_pretrained

log = logging.getLogger(__name__)


def export_checkpoint(checkpoint: Path, out: Path, merge: bool = False) -> Path:
    """Write `checkpoint` (a model folder or run directory) to the new folder `out` as a full model."""
    from dsum.model.loading import checkpoint_folder

    folder = checkpoint_folder(checkpoint)
    adapter = is_adapter(folder)
    if adapter and not merge:
        raise UserError(f"{folder} holds LoRA adapters, not a full model: add --merge to write base + adapters as one model")
    check_new_folder(out, "an export")  # before the model loads (seconds to minutes)
    if merge and not adapter:
        log.info(f"--merge: {folder} is a full model without LoRA adapters; it is exported as it is")
    model, tokenizer = load_pretrained(folder)
    if adapter:
        tied = getattr(model.get_base_model().config, "tie_word_embeddings", False)
        model = model.merge_and_unload()
        if tied and not model.config.tie_word_embeddings:
            log.info("merged: the adapter trained a tied embedding, so the exported model's input embeddings and output layer are separate matrices")
    with new_folder(out, "an export") as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    return Path(out)
