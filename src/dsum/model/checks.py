"""Model settings refused before any work: from the config, the tokenizer's files and the model's config.

`dsum train` calls check_settings before it claims a run directory, so a setting the model cannot use
ends in one line (exit 2) and leaves nothing behind. The same checks run again where the model and
the framing are built (wrap_lora, dsum.model.tokenization.framing_for), for library callers.
"""

from __future__ import annotations

from typing import Sequence

from dsum.model.tokenization import check_prompt, is_decoder_only, load_tokenizer
from dsum.util.errors import UserError

# Layers shown when a target module is not found: enough to recognise the model's naming.
SHOWN_LAYERS = 8


def check_settings(cfg, model_config) -> None:
    """LoRA targets the model lacks (the model built on the meta device: shapes, no weights) and, for a
    decoder-only model, prompt settings its chat template cannot use."""
    if cfg.lora is not None:
        from dsum.model.memory import build_on_meta

        check_lora_targets(build_on_meta(model_config), cfg.lora.target_modules)
    if is_decoder_only(model_config):
        # A tiny model's tokenizer is trained from the data: it has no chat template of its own.
        template = None if cfg.model.tiny is not None else load_tokenizer(cfg.model.name).chat_template
        check_prompt(cfg.prompt, template)


def adaptable_layers(model) -> dict:
    """Name → layer of the kinds peft's LoRA adapts (linear, embedding, convolution), the output head left out."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    kinds = (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d, Conv1D)
    head = model.get_output_embeddings()
    return {name: m for name, m in model.named_modules() if isinstance(m, kinds) and m is not head}


def check_lora_targets(model, target_modules: str | Sequence[str]) -> None:
    """Every name of lora.target_modules is a layer of the model, as peft matches them (the full name, or
    its end after a dot); otherwise peft ends in NoMatchingPeftModuleError, or silently adapts fewer layers."""
    if target_modules == "all-linear":
        return
    layers = adaptable_layers(model)
    wanted = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    missing = [t for t in wanted if not any(name == t or name.endswith(f".{t}") for name in layers)]
    if not missing:
        return
    ends = list(dict.fromkeys(name.rsplit(".", 1)[-1] for name in layers))
    shown = ", ".join(ends[:SHOWN_LAYERS]) + (", …" if len(ends) > SHOWN_LAYERS else "")
    raise UserError(
        f"lora.target_modules names {', '.join(missing)}, which {type(model).__name__} does not have: "
        f"name its layers ({shown}) or set lora.target_modules: all-linear"
    )
