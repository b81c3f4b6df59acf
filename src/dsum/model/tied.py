"""Tied weights (input embeddings shared with the output layer, BART's model.shared) as dsum saves, loads and
wraps them: nothing reported missing that is there, and LoRA's copy of a tied layer explained in one line."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def untied_missing_keys(model, missing: list[str]) -> list[str]:
    """The keys a state-dict load reports missing, less the weights tied to one that loaded: save_pretrained writes a
    tied weight once (BART's embed_tokens and lm_head are model.shared), and loading its source loads it too."""
    tied = getattr(model, "all_tied_weights_keys", None) or {}
    parameters = dict(model.named_parameters(remove_duplicate=False))
    kept = []
    for key in missing:
        source = tied.get(key)
        shared = source in parameters and key in parameters and parameters[key] is parameters[source]
        if not (shared and source not in missing):
            kept.append(key)
    return kept


def note_tied_embeddings(model, modules_to_save) -> None:
    """peft's "a tied layer is part of the adapter" warning in dsum's words (dsum.util.library_noise hides peft's)."""
    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    tied = head is not None and head.weight is embeddings.weight
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if module in (head, embeddings)}
    saved = sorted(names & set(modules_to_save))
    if tied and saved:
        other = ", ".join(sorted(names - set(saved))) or "the other side"
        log.info(
            f"lora.modules_to_save: {', '.join(saved)} is tied to {other} in the base model; the adapter trains its own "
            f"copy of {', '.join(saved)} and {other} keeps the base's weights (export --merge writes them untied)"
        )
