"""Real-shaped stand-ins of the hub models: the real tokenizer and config.json, sizes shrunk, random weights.

Everything but the sizes is the real model's: vocabulary, special ids, the decoder start the config
names (or does not: digit82's has none), the tying of the output layer, the model class. A tokenizer
we trained ourselves would hide what the real one does (KoBART adds no `</s>`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

MODELS = Path(__file__).resolve().parent / "models"
KOBART = MODELS / "digit82__kobart-summarization"
PKO_T5 = MODELS / "paust__pko-t5-base"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def shrunk_sizes(model_type: str, d_model: int, layers: int, ffn: int, heads: int) -> dict:
    if model_type == "t5":
        return dict(d_model=d_model, d_kv=d_model // heads, d_ff=ffn, num_layers=layers, num_decoder_layers=layers, num_heads=heads)
    return dict(
        d_model=d_model, encoder_layers=layers, decoder_layers=layers, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn,
        encoder_attention_heads=heads, decoder_attention_heads=heads, num_hidden_layers=layers,
    )


def build_standin(source: Path, out: Path, d_model: int = 32, layers: int = 1, ffn: int = 64, heads: int = 2) -> Path:
    """save_pretrained a model shaped like `source` (a folder of tests/models) into `out`, with its tokenizer files."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    real = json.loads((source / "config.json").read_text(encoding="utf-8"))
    config = AutoConfig.from_pretrained(source, **shrunk_sizes(real["model_type"], d_model, layers, ffn, heads))
    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_config(config)
    if real.get("tie_word_embeddings") is False:
        # transformers 5 sets T5Config.tie_word_embeddings to True whatever the file says; the real
        # checkpoint has its own lm_head, which from_pretrained then keeps untied.
        model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight) * 0.05)
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, out / name)
    return out
