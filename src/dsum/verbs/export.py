"""`dsum export`: a checkpoint as a plain model folder that other tools load with from_pretrained.

A LoRA checkpoint holds only the adapters; --merge loads the base in full precision (merging into
4-bit weights would round the update away), adds each adapter's update to its layer
(peft's merge_and_unload) and saves one ordinary model with the tokenizer.
"""

from __future__ import annotations

from pathlib import Path

from dsum.util.atomic import new_folder
from dsum.util.errors import UserError
from dsum.model.loading import is_adapter, load_pretrained


def export_checkpoint(checkpoint: Path, out: Path, merge: bool = False) -> Path:
    """Write `checkpoint` (a model folder or run directory) to the new folder `out` as a full model."""
    from dsum.model.loading import checkpoint_folder

    folder = checkpoint_folder(checkpoint)
    adapter = is_adapter(folder)
    if adapter and not merge:
        raise UserError(f"{folder} holds LoRA adapters, not a full model: add --merge to write base + adapters as one model")
    model, tokenizer = load_pretrained(folder)
    if adapter:
        model = model.merge_and_unload()
    with new_folder(out, "an export") as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    return Path(out)
