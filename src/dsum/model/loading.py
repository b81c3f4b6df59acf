"""Model and tokenizer: from the hub, from a local folder, or tiny and built offline from a config.

Whatever the source, every `#…#` token of the data is added to the tokenizer as one token
(dsum.model.tokenization), the embeddings are resized to match, and the framing's ids (decoder start,
eos, pad) are written into the model's config, so a saved checkpoint generates as it was trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from dsum.config import LoraConfig, ModelConfig, PromptConfig, TinyModelConfig
from dsum.util.errors import UserError
from dsum.util.hub import ask_hub_first, load_problem
from dsum.model.tokenization import add_data_tokens, framing_for, is_decoder_only, load_tokenizer

DECODER_ONLY_TINY = ("llama", "qwen3")
# The tiny decoder-only model's tokenizer has ChatML's turn markers (prompt.chat_template uses them).
CHAT_TOKENS = ["<|im_start|>", "<|im_end|>"]


def load_model_and_tokenizer(
    model_cfg: ModelConfig, special_tokens: Sequence[str], train_texts: Iterable[str] = (),
    quantization: str = "none", prompt: PromptConfig | None = None,
):
    """Return (model, tokenizer) ready for fine-tuning (wrap_lora adds adapters).

    Seq2seq models get the data's `special_tokens` and the framing's ids (load_seq2seq); decoder-only
    ones the prompt's chat template (load_decoder_only).
    """
    if is_decoder_only(load_model_config(model_cfg)):
        return load_decoder_only(model_cfg, train_texts, prompt or PromptConfig(), quantization)
    return load_seq2seq(model_cfg, special_tokens, train_texts, quantization)


def load_seq2seq(model_cfg: ModelConfig, special_tokens: Sequence[str], train_texts: Iterable[str], quantization: str):
    if model_cfg.tiny is not None:
        tokenizer = train_tokenizer(train_texts, model_cfg.tiny)
        add_data_tokens(tokenizer, special_tokens)
        model = build_tiny_model(model_cfg.tiny, tokenizer)
    else:
        model, tokenizer = load_pretrained(model_cfg.name, quantization)
        add_data_tokens(tokenizer, special_tokens)
    if len(tokenizer) != model.get_input_embeddings().num_embeddings:
        resize_embeddings(model, len(tokenizer))
    framing_for(model.config, tokenizer).apply_to(model)
    return model, tokenizer


def load_decoder_only(model_cfg: ModelConfig, train_texts: Iterable[str], prompt: PromptConfig, quantization: str):
    """A decoder-only model and its tokenizer, with the prompt's chat template and the stop ids set.

    No data tokens are added: the vocabulary spells `#Person1#` already, and new embedding rows
    would stay untrained under LoRA. The tokenizer pads on the left, for batched generation;
    training's collator pads on the right itself.
    """
    if model_cfg.tiny is not None:
        tokenizer = train_tokenizer(train_texts, model_cfg.tiny, extra_special=CHAT_TOKENS)
        model = build_tiny_model(model_cfg.tiny, tokenizer)
    else:
        model, tokenizer = load_pretrained(model_cfg.name, quantization)
    tokenizer.padding_side = "left"
    framing_for(model.config, tokenizer, prompt).apply_to(model)  # pad and stop ids; greedy unless --samples
    return model, tokenizer


def check_quantization(lora: LoraConfig | None) -> None:
    """4bit/8bit loading needs bitsandbytes, on any backend it runs (CUDA, or the CPU): dsum.model.quantization."""
    from dsum.model.quantization import check_quantization as check

    check(lora.quantization if lora is not None else "none")


def quantization_config(quantization: str):
    """bitsandbytes settings: NF4 with double quantization and bf16 compute (QLoRA), or LLM.int8()."""
    if quantization == "none":
        return None
    import torch
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16
    )


def wrap_lora(model, lora: LoraConfig, base: str | None = None):
    """The model with LoRA adapters (peft) on lora.target_modules; only the adapters train.

    `base`: where the adapter's config says its base model is (default: the name it was loaded from).
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType, get_peft_model, prepare_model_for_kbit_training

    from dsum.model.checks import check_lora_targets

    check_lora_targets(model, lora.target_modules)
    if getattr(model, "hf_quantizer", None) is not None:
        # Norms to fp32 and inputs that require grad, so gradients reach the adapters through frozen 4-bit layers.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    task = TaskType.CAUSAL_LM if is_decoder_only(model.config) else TaskType.SEQ_2_SEQ_LM
    settings = PeftLoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules, task_type=task,
        modules_to_save=lora.modules_to_save or None,
    )
    from dsum.model.tied import note_tied_embeddings

    note_tied_embeddings(model, lora.modules_to_save or [])
    model = get_peft_model(model, settings)
    if base is not None:
        model.peft_config["default"].base_model_name_or_path = base
    return model


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


ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(folder: Path) -> bool:
    """A folder holding a LoRA adapter (peft's adapter_config.json)."""
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def read_adapter_config(folder: Path) -> dict:
    """The adapter_config.json of a LoRA adapter folder (peft's settings: base model, r, target modules...)."""
    import json

    return json.loads((Path(folder) / ADAPTER_CONFIG).read_text(encoding="utf-8"))


def adapter_base(folder: Path) -> str:
    """The base model a LoRA adapter folder was trained on: a hub name, or a folder (relative to the adapter's)."""
    base = read_adapter_config(folder)["base_model_name_or_path"]
    local = (folder / base).resolve()
    return str(local) if local.is_dir() else base


def set_adapter_base(folder: Path, base: str) -> None:
    """Point an adapter folder's config at another base model (a hub name, or a folder relative to it)."""
    import json

    from dsum.util.atomic import atomic_write_text

    path = folder / ADAPTER_CONFIG
    settings = read_adapter_config(folder)
    settings["base_model_name_or_path"] = base
    atomic_write_text(path, json.dumps(settings, indent=2) + "\n")


def load_pretrained(name_or_path: str | Path, quantization: str = "none"):
    """A hub name (e.g. digit82/kobart-summarization) or a local folder saved by save_pretrained.

    Seq2seq or decoder-only, as the model's config says; a folder holding a LoRA adapter loads its base
    (quantized when asked: lora.quantization) with the adapter on top. Decoder-only tokenizers pad on
    the left (batched generation needs it, and a reload resets it to what the files say).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from dsum.model.gguf import is_gguf, local_model
    from dsum.model.quantization import device_map

    named = str(name_or_path)
    name_or_path = local_model(name_or_path)  # a .gguf file: its float32 folder, converted once (dsum.model.gguf)
    folder = Path(name_or_path)
    adapter = folder.is_dir() and (folder / ADAPTER_CONFIG).is_file()
    if folder.is_dir() and not adapter and not (folder / "config.json").is_file():
        hint = f"; it is a run directory: use {folder / 'checkpoint-best'}" if (folder / "checkpoint-best").is_dir() else ""
        raise UserError(f"{folder} holds no model (expected config.json and model weights from save_pretrained){hint}")
    tokenizer = load_tokenizer(name_or_path)
    named = adapter_base(folder) if adapter else named
    base = local_model(named)
    ask_hub_first(base)
    try:
        decoder_only = is_decoder_only(AutoConfig.from_pretrained(base))
        auto = AutoModelForCausalLM if decoder_only else AutoModelForSeq2SeqLM
        settings = quantization_config(quantization)
        extra = {"quantization_config": settings, "device_map": device_map()} if settings else {}
        model = auto.from_pretrained(base, **extra)
        if is_gguf(named):  # adapters trained on it name the .gguf file as their base, not the cache folder
            model.name_or_path = model.config.name_or_path = str(Path(named).resolve())
    except (OSError, ValueError) as exc:
        raise UserError(
            f"cannot load model {base!r}: {load_problem(base, exc)} "
            "(give a local folder, a hub name reachable from here, or set model.tiny for an offline model)"
        ) from None
    if adapter:
        from peft import PeftModel

        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            resize_embeddings(model, len(tokenizer))  # a hub base that got the data's tokens in training
        model = PeftModel.from_pretrained(model, str(folder))
    if decoder_only:
        tokenizer.padding_side = "left"
    return model, tokenizer


def load_model_config(model_cfg: ModelConfig, local_only: bool = False):
    """The model's config alone (no weights): enough to check lengths and precision before any work."""
    if model_cfg.tiny is not None:
        return tiny_config(model_cfg.tiny, vocab_size=model_cfg.tiny.vocab_size, pad=0, bos=1, eos=2)
    folder = Path(model_cfg.name)
    if folder.is_dir() and (folder / ADAPTER_CONFIG).is_file():
        model_cfg = model_cfg.model_copy(update={"name": adapter_base(folder)})
    from transformers import AutoConfig

    from dsum.model.gguf import local_model

    ask_hub_first(model_cfg.name)
    try:
        return AutoConfig.from_pretrained(local_model(model_cfg.name), local_files_only=local_only)
    except (OSError, ValueError) as exc:
        raise UserError(
            f"cannot load the config of model {model_cfg.name!r}: {load_problem(model_cfg.name, exc)} "
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
    if is_decoder_only(config):
        # One sequence holds the prompt and then the summary (training) or the new tokens (generation).
        longest = model_cfg.max_source_length + max(model_cfg.max_target_length, max_new_tokens)
        if longest > limit:
            raise UserError(
                f"model.max_source_length + max(model.max_target_length, generation.max_new_tokens) = {longest} is beyond "
                f"the {limit} positions of {model_cfg.name if model_cfg.tiny is None else 'the tiny model'}: lower model.max_source_length"
            )
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


def train_tokenizer(texts: Iterable[str], tiny: TinyModelConfig, extra_special: Sequence[str] = ()):
    """A BPE tokenizer (SentencePiece-style `▁` words) trained on the given text with `tokenizers`.

    The data's `#…#` tokens are left out of the training text: add_data_tokens adds them afterwards,
    as it does to a hub tokenizer. No post-processor: dsum.model.tokenization frames every example itself.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from dsum.data.text import TOKEN_PATTERN

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    raw.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=tiny.vocab_size,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>", "<mask>", *extra_special],
        initial_alphabet=["#"],  # other #Word# tokens (#Person9#) are spelled out, not <unk>
        show_progress=False,
    )
    raw.train_from_iterator((TOKEN_PATTERN.sub(" ", text) for text in texts), trainer=trainer)
    # The raw Tokenizer object must be passed: wrapping a high-level tokenizer breaks truncation.
    extra = {"additional_special_tokens": list(extra_special)} if extra_special else {}
    return PreTrainedTokenizerFast(
        **extra,
        tokenizer_object=raw,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        mask_token="<mask>",
    )


def tiny_config(tiny: TinyModelConfig, vocab_size: int, pad: int, bos: int, eos: int):
    """The config of a tiny model (1,024 learned positions for BART, as KoBART's 1,026; 2,048 for the LLMs)."""
    from transformers import BartConfig, LlamaConfig, Qwen3Config, T5Config

    if tiny.architecture in DECODER_ONLY_TINY:
        settings = dict(
            vocab_size=vocab_size, hidden_size=tiny.d_model, intermediate_size=tiny.ffn_dim, num_hidden_layers=tiny.layers,
            num_attention_heads=tiny.heads, num_key_value_heads=tiny.heads, max_position_embeddings=2048,
            pad_token_id=pad, bos_token_id=bos, eos_token_id=eos, tie_word_embeddings=True,
            # LoRA leaves embeddings (tied to the output head) and norms at their random start: with the usual
            # 0.02 a 64-wide model's logits cannot move past about ±1 and the loss stays near uniform.
            initializer_range=0.2,
        )
        if tiny.architecture == "qwen3":
            return Qwen3Config(head_dim=tiny.d_model // tiny.heads, **settings)
        return LlamaConfig(**settings)

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
    """A randomly initialised model of the configured architecture and size, matching the tokenizer's ids."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)  # the same config always builds the same starting weights
    config = tiny_config(tiny, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    return (AutoModelForCausalLM if tiny.architecture in DECODER_ONLY_TINY else AutoModelForSeq2SeqLM).from_config(config)


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
    from dsum.model.generate import LogitEnsemble

    loaded = [load_pretrained(folder) for folder in folders]
    models, tokenizers = [m for m, _ in loaded], [t for _, t in loaded]
    check_same_tokenizer(folders, tokenizers)
    for folder, model in zip(folders, models):
        if is_decoder_only(model.config):
            raise UserError(f"{folder} is a decoder-only model: logit ensembles take seq2seq models for now (or use dsum ensemble mbr)")
    framings = [framing_for(m.config, tokenizers[0]) for m in models]
    for folder, framing in zip(folders[1:], framings[1:]):
        if framing != framings[0]:
            raise UserError(
                f"{folder} frames examples as {framing.architecture} and {folders[0]} as {framings[0].architecture}: "
                "an ensemble needs models of one architecture family"
            )
    return LogitEnsemble(models), tokenizers[0]


# Decoder-only models' max_new_tokens when the config leaves it unset: Korean costs about a token per
# syllable in SOLAR's vocabulary, and the SOLAR team's 96 cut 19% of summaries (150 did not).
DECODER_ONLY_MAX_NEW_TOKENS = 160


def with_model_defaults(cfg, model_config):
    """The config with the defaults that depend on the kind of model (a copy; the caller's is left alone)."""
    gen = cfg.generation
    if is_decoder_only(model_config) and "max_new_tokens" not in gen.model_fields_set:
        return cfg.model_copy(update={"generation": gen.model_copy(update={"max_new_tokens": DECODER_ONLY_MAX_NEW_TOKENS})})
    return cfg


# ---------------------------------------------------------------------------------------------
# Inference: a saved checkpoint (predict, tune's decode mode, folds, average, export)


def checkpoint_folder(path: Path) -> Path:
    """A model folder, or a run directory's checkpoint-best (or a llama.cpp .gguf file: dsum.model.gguf)."""
    from dsum.model.gguf import gguf_file, is_gguf

    path = Path(path)
    if is_gguf(path):
        return gguf_file(path)
    if not path.is_dir():
        raise UserError(f"checkpoint folder not found: {path} (point --checkpoint at a run directory or runs/<name>/checkpoint-best)")
    if not is_model_folder(path) and is_model_folder(path / "checkpoint-best"):
        return path / "checkpoint-best"
    return path


def is_model_folder(path: Path) -> bool:
    """A full model (config.json) or a LoRA adapter (adapter_config.json)."""
    return (path / "config.json").is_file() or is_adapter(path)


def load_for_inference(checkpoints: Sequence[Path], quantization: str = "none"):
    """(model, tokenizer) of checkpoint folders (or run directories), on the GPU when there is one.

    Several: a LogitEnsemble of them (dsum.model.generate) and their shared tokenizer. A LoRA
    checkpoint loads its base (quantized as lora.quantization says: training's) with the adapter on top.
    """
    import torch

    folders = [checkpoint_folder(path) for path in checkpoints]
    model, tokenizer = load_pretrained(folders[0], quantization) if len(folders) == 1 else load_ensemble(folders)
    if torch.cuda.is_available() and quantization == "none":
        model = model.cuda()  # a quantized model is placed on the GPU as it loads
    return model, tokenizer
