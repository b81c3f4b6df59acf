"""Model and tokenizer: from the hub, from a local folder, or tiny and built offline from a config.

Whatever the source, every special token the data holds (#Person1#, #PhoneNumber#, ...) is added
to the tokenizer as one unsplittable token and the embeddings are resized to match.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from dsum.config import ModelConfig, TinyModelConfig
from dsum.errors import UserError

# Strings a decoded summary must never keep (the organiser baseline strips the same ones).
MODEL_SPECIAL_STRINGS = ("<usr>", "<s>", "</s>", "<pad>", "<unk>", "<mask>")


def load_model_and_tokenizer(model_cfg: ModelConfig, special_tokens: Sequence[str], train_texts: Iterable[str] = ()):
    """Return (model, tokenizer) ready for fine-tuning, with `special_tokens` added."""
    if model_cfg.tiny is not None:
        tokenizer = train_tokenizer(train_texts, model_cfg.tiny, special_tokens)
        model = build_tiny_model(model_cfg.tiny, tokenizer)
    else:
        model, tokenizer = load_pretrained(model_cfg.name)
    add_special_tokens(model, tokenizer, special_tokens)
    return model, tokenizer


def load_pretrained(name_or_path: str | Path):
    """A hub name (e.g. digit82/kobart-summarization) or a local folder saved by save_pretrained."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
        model = AutoModelForSeq2SeqLM.from_pretrained(str(name_or_path))
    except OSError as exc:
        raise UserError(
            f"cannot load model {name_or_path!r}: {str(exc).splitlines()[0]} "
            "(give a local folder, a hub name reachable from here, or set model.tiny for an offline model)"
        ) from None
    return model, tokenizer


def add_special_tokens(model, tokenizer, special_tokens: Sequence[str]) -> int:
    """Add tokens the tokenizer would split; resize the embeddings. Returns how many were new."""
    missing = [tok for tok in special_tokens if tok not in tokenizer.get_vocab()]
    added = tokenizer.add_tokens(missing, special_tokens=True) if missing else 0
    if len(tokenizer) != model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    return added


def train_tokenizer(texts: Iterable[str], tiny: TinyModelConfig, special_tokens: Sequence[str]):
    """A BPE tokenizer (sentencepiece-style spaces) trained on the given text with `tokenizers`."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    base_specials = ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    raw.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=tiny.vocab_size,
        special_tokens=base_specials + list(special_tokens),
        show_progress=False,
    )
    raw.train_from_iterator(texts, trainer=trainer)
    bos, eos = raw.token_to_id("<s>"), raw.token_to_id("</s>")
    if tiny.architecture == "t5":  # T5 ends inputs with </s> and has no <s>
        raw.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos)])
    else:
        raw.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
        )
    # The raw Tokenizer object must be passed: wrapping a high-level tokenizer breaks truncation.
    return PreTrainedTokenizerFast(
        tokenizer_object=raw,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        mask_token="<mask>",
    )


def build_tiny_model(tiny: TinyModelConfig, tokenizer):
    """A randomly initialised BART or T5 of the configured size, matching the tokenizer's ids."""
    import torch
    from transformers import (
        BartConfig,
        BartForConditionalGeneration,
        T5Config,
        T5ForConditionalGeneration,
    )

    torch.manual_seed(0)  # the same config always builds the same starting weights
    ids = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    if tiny.architecture == "t5":
        config = T5Config(
            vocab_size=len(tokenizer),
            d_model=tiny.d_model,
            d_kv=tiny.d_model // tiny.heads,
            d_ff=tiny.ffn_dim,
            num_layers=tiny.layers,
            num_decoder_layers=tiny.layers,
            num_heads=tiny.heads,
            decoder_start_token_id=tokenizer.pad_token_id,
            **ids,
        )
        return T5ForConditionalGeneration(config)
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=tiny.d_model,
        encoder_layers=tiny.layers,
        decoder_layers=tiny.layers,
        encoder_attention_heads=tiny.heads,
        decoder_attention_heads=tiny.heads,
        encoder_ffn_dim=tiny.ffn_dim,
        decoder_ffn_dim=tiny.ffn_dim,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id,
        **ids,
    )
    return BartForConditionalGeneration(config)
