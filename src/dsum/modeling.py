"""Model and tokenizer: from the hub, from a local folder, or tiny and built offline from a config.

Whatever the source, every `#…#` token of the data is added to the tokenizer as one token
(dsum.tokenization), the embeddings are resized to match, and the framing's ids (decoder start,
eos, pad) are written into the model's config, so a saved checkpoint generates as it was trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from dsum.config import ModelConfig, TinyModelConfig
from dsum.errors import UserError
from dsum.tokenization import add_data_tokens, apply_framing, first_line, framing_for, load_tokenizer


def load_model_and_tokenizer(model_cfg: ModelConfig, special_tokens: Sequence[str], train_texts: Iterable[str] = ()):
    """Return (model, tokenizer) ready for fine-tuning, with `special_tokens` added and the framing applied."""
    if model_cfg.tiny is not None:
        tokenizer = train_tokenizer(train_texts, model_cfg.tiny)
        add_data_tokens(tokenizer, special_tokens)
        model = build_tiny_model(model_cfg.tiny, tokenizer)
    else:
        model, tokenizer = load_pretrained(model_cfg.name)
        add_data_tokens(tokenizer, special_tokens)
    if len(tokenizer) != model.get_input_embeddings().num_embeddings:
        resize_embeddings(model, len(tokenizer))
    apply_framing(model, framing_for(model.config, tokenizer))
    return model, tokenizer


def resize_embeddings(model, size: int) -> None:
    """resize_token_embeddings, keeping an output layer that was not tied to the input embeddings untied.

    pko-t5 has its own lm_head, but transformers 5's T5Config always says tie_word_embeddings=True,
    so a plain resize would tie lm_head to the (resized) input embeddings: a different model.
    """
    import torch

    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    untied = head is not None and head.weight.data_ptr() != embeddings.weight.data_ptr()
    old_head = head.weight.detach().clone() if untied else None
    model.resize_token_embeddings(size)
    if untied:
        new_head = torch.nn.Linear(old_head.shape[1], size, bias=False, dtype=old_head.dtype, device=old_head.device)
        with torch.no_grad():
            new_head.weight[: len(old_head)] = old_head
            new_head.weight[len(old_head) :] = old_head.mean(dim=0)  # new tokens start from the average row
        model.set_output_embeddings(new_head)


def load_pretrained(name_or_path: str | Path):
    """A hub name (e.g. digit82/kobart-summarization) or a local folder saved by save_pretrained."""
    from transformers import AutoModelForSeq2SeqLM

    folder = Path(name_or_path)
    if folder.is_dir() and not (folder / "config.json").is_file():
        hint = f"; it is a run directory: use {folder / 'checkpoint-best'}" if (folder / "checkpoint-best").is_dir() else ""
        raise UserError(f"{folder} holds no model (expected config.json and model weights from save_pretrained){hint}")
    tokenizer = load_tokenizer(name_or_path)
    try:
        model = AutoModelForSeq2SeqLM.from_pretrained(str(name_or_path))
    except (OSError, ValueError) as exc:
        raise UserError(
            f"cannot load model {name_or_path!r}: {first_line(exc)} "
            "(give a local folder, a hub name reachable from here, or set model.tiny for an offline model)"
        ) from None
    return model, tokenizer


def load_model_config(model_cfg: ModelConfig, local_only: bool = False):
    """The model's config alone (no weights): enough to check lengths and precision before any work."""
    if model_cfg.tiny is not None:
        return tiny_config(model_cfg.tiny, vocab_size=model_cfg.tiny.vocab_size, pad=0, bos=1, eos=2)
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model_cfg.name, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        raise UserError(
            f"cannot load the config of model {model_cfg.name!r}: {first_line(exc)} "
            "(give a local folder, a hub name reachable from here, or set model.tiny for an offline model)"
        ) from None


def position_limit(config) -> int | None:
    """How many positions the model's learned position embeddings hold (None: relative positions, as T5)."""
    if config.model_type in ("t5", "mt5", "umt5"):
        return None
    return getattr(config, "max_position_embeddings", None)


def check_lengths(model_cfg: ModelConfig, max_new_tokens: int, config) -> None:
    """Refuse lengths the model cannot take before any work: past them training ends in an IndexError."""
    limit = position_limit(config)
    if limit is None:
        return
    asked = {
        "model.max_source_length": model_cfg.max_source_length,
        "model.max_target_length": model_cfg.max_target_length,
        # The decoder also holds its start token: max_new_tokens + 1 positions.
        "generation.max_new_tokens": max_new_tokens + 1,
    }
    for key, length in asked.items():
        if length > limit:
            shown = length - 1 if key == "generation.max_new_tokens" else length
            room = limit - 1 if key == "generation.max_new_tokens" else limit
            raise UserError(
                f"{key}={shown} is beyond what {model_cfg.name if model_cfg.tiny is None else 'the tiny model'} "
                f"can take ({config.max_position_embeddings} positions): set {key}={room} or less"
            )


def train_tokenizer(texts: Iterable[str], tiny: TinyModelConfig):
    """A BPE tokenizer (SentencePiece-style `▁` words) trained on the given text with `tokenizers`.

    The data's `#…#` tokens are left out of the training text: add_data_tokens adds them afterwards,
    as it does to a hub tokenizer. No post-processor: dsum.tokenization frames every example itself.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from dsum.text import TOKEN_PATTERN

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    raw.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=tiny.vocab_size,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=["#"],  # other #Word# tokens (#Person9#) are spelled out, not <unk>
        show_progress=False,
    )
    raw.train_from_iterator((TOKEN_PATTERN.sub(" ", text) for text in texts), trainer=trainer)
    # The raw Tokenizer object must be passed: wrapping a high-level tokenizer breaks truncation.
    return PreTrainedTokenizerFast(
        tokenizer_object=raw,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        mask_token="<mask>",
    )


def tiny_config(tiny: TinyModelConfig, vocab_size: int, pad: int, bos: int, eos: int):
    """The BartConfig or T5Config of a tiny model (1,024 learned positions for BART, as KoBART's 1,026)."""
    from transformers import BartConfig, T5Config

    if tiny.architecture == "t5":
        return T5Config(
            vocab_size=vocab_size,
            d_model=tiny.d_model,
            d_kv=tiny.d_model // tiny.heads,
            d_ff=tiny.ffn_dim,
            num_layers=tiny.layers,
            num_decoder_layers=tiny.layers,
            num_heads=tiny.heads,
            pad_token_id=pad,
            eos_token_id=eos,
            decoder_start_token_id=pad,
        )
    return BartConfig(
        vocab_size=vocab_size,
        d_model=tiny.d_model,
        encoder_layers=tiny.layers,
        decoder_layers=tiny.layers,
        encoder_attention_heads=tiny.heads,
        decoder_attention_heads=tiny.heads,
        encoder_ffn_dim=tiny.ffn_dim,
        decoder_ffn_dim=tiny.ffn_dim,
        max_position_embeddings=1024,
        pad_token_id=pad,
        bos_token_id=bos,
        eos_token_id=eos,
        decoder_start_token_id=eos,
        forced_eos_token_id=eos,
    )


def build_tiny_model(tiny: TinyModelConfig, tokenizer):
    """A randomly initialised BART or T5 of the configured size, matching the tokenizer's ids."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    torch.manual_seed(0)  # the same config always builds the same starting weights
    config = tiny_config(tiny, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    return AutoModelForSeq2SeqLM.from_config(config)


def check_same_tokenizer(folders: Sequence[Path], tokenizers: Sequence) -> None:
    """Ensembles and averages mix ids: every checkpoint must hold the first one's vocabulary, id for id."""
    first = tokenizers[0].get_vocab()
    for folder, tokenizer in zip(folders[1:], tokenizers[1:]):
        vocab = tokenizer.get_vocab()
        if vocab != first:
            differ = len(set(vocab.items()) ^ set(first.items())) // 2 or abs(len(vocab) - len(first))
            raise UserError(
                f"{folder} has another vocabulary than {folders[0]} ({len(vocab)} vs {len(first)} tokens, "
                f"{differ} differ): combine only checkpoints trained with one tokenizer and the same data tokens"
            )


def load_ensemble(folders: Sequence[Path]):
    """(LogitEnsemble, tokenizer) of several checkpoint folders sharing a tokenizer and framing."""
    from dsum.generate import LogitEnsemble

    loaded = [load_pretrained(folder) for folder in folders]
    models, tokenizers = [m for m, _ in loaded], [t for _, t in loaded]
    check_same_tokenizer(folders, tokenizers)
    for folder, model in zip(folders, models):
        if not getattr(model.config, "is_encoder_decoder", False):
            raise UserError(f"{folder} is a decoder-only model: logit ensembles take seq2seq models for now (or use dsum ensemble mbr)")
    framings = [framing_for(m.config, tokenizers[0]) for m in models]
    for folder, framing in zip(folders[1:], framings[1:]):
        if framing != framings[0]:
            raise UserError(
                f"{folder} frames examples as {framing.architecture} and {folders[0]} as {framings[0].architecture}: "
                "an ensemble needs models of one architecture family"
            )
    return LogitEnsemble(models), tokenizers[0]
