"""Real-shaped stand-ins of the hub models: the real tokenizer and config.json, sizes shrunk, random weights.

build_standin makes the encoder-decoders (KoBART, pko-t5); build_causal_standin the decoder-only
models (SOLAR, a LlamaConfig with vocab 32,000 and an untied lm_head; Qwen3, vocab 151,936, tied).

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
SOLAR = MODELS / "upstage__SOLAR-10.7B-Instruct-v1.0"
QWEN3 = MODELS / "Qwen__Qwen3-4B"
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


def build_causal_standin(
    source: Path, out: Path, hidden: int = 32, layers: int = 1, intermediate: int = 64, heads: int = 2,
    kv_heads: int = 1, seed: int = 0,
) -> Path:
    """save_pretrained a decoder-only model shaped like `source` (a folder of tests/models) into `out`,
    in float32, with every other file of `source` (tokenizer, generation_config.json) copied beside it.

    Only the sizes shrink: vocab_size, the special ids, max_position_embeddings, rope and the tying of
    lm_head stay the real config's.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    real = json.loads((source / "config.json").read_text(encoding="utf-8"))
    fields = {key: value for key, value in real.items() if key not in ("model_type", "torch_dtype", "dtype")}
    fields.update(
        hidden_size=hidden, num_hidden_layers=layers, intermediate_size=intermediate,
        num_attention_heads=heads, num_key_value_heads=kv_heads,
        dtype="float32",  # the files say float16 / bfloat16; from_pretrained follows the saved dtype
    )
    if "head_dim" in real:  # Qwen3 names it (128); Llama derives it from hidden_size // heads
        fields["head_dim"] = hidden // heads
    # Built from the edited dict, not AutoConfig.from_pretrained(source, **sizes): that sets the sizes
    # after __init__, so what __init__ derives from them (Llama's head_dim, Qwen3's 36 layer_types) would
    # stay the real model's.
    config = AutoConfig.for_model(real["model_type"], **fields)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(out)
    for path in sorted(source.iterdir()):
        if path.is_file() and path.name not in ("config.json", "PROVENANCE.md"):
            shutil.copy(path, out / path.name)
    return out
