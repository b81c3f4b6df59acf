"""`dsum doctor`: the team's pre-experiment checklist as real checks, before hours go into a run.

Each check answers one question a teammate would otherwise find out an hour into training: is there
a GPU for this precision, are the data files there and sound, can the model be loaded from here,
where will the tracker write, is there disk for the checkpoints, does the board's analyser work; for an
LLM (decoder-only or LoRA) config also: can it be quantized here, will training fit in the GPU's memory
(dsum.model.memory's estimate), will the summaries fit in generation.max_new_tokens.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from dsum.config import Config, LoraConfig, ModelConfig, TinyModelConfig
from dsum.util.errors import UserError
from dsum.util.gpu import MIN_DRIVER, gpu_memory, nvidia_smi_gpus, torch_build

OK, WARN, FAIL = "ok", "warn", "fail"
KOBART_PARAMS = 124_000_000  # digit82/kobart-summarization, assumed when the model's config is not at hand
# A Trainer checkpoint holds fp32 weights (4 bytes/param) and AdamW's two moments (8 bytes/param).
CHECKPOINT_BYTES_PER_PARAM = 12
GIB = 1024**3


@dataclass
class Check:
    name: str
    level: str  # ok | warn | fail
    detail: str


def run_checks(cfg: Config, source: str = "config") -> list[Check]:
    """All checks in the order a run needs them; the config itself was valid if we got here."""
    return [
        Check("config", OK, f"{source} loads and validates"),
        check_gpu(cfg.training.precision, model_type(cfg.model)),
        check_data(cfg),
        check_model(cfg.model),
        check_tokenizer(cfg),
        check_engine(cfg),
        *check_llm(cfg),
        check_tracking(cfg),
        check_disk(cfg),
        check_analyser(cfg.metric.tokenizer),
    ]


def model_type(model: ModelConfig) -> str:
    """The model's type (bart, t5, llama...) as the run reads it; "bart" when its config does not load (the model row says why)."""
    from dsum.model.loading import load_model_config

    try:
        return load_model_config(model).model_type
    except UserError:
        return "bart"


def check_gpu(precision: str, model_type: str = "bart") -> Check:
    """A visible CUDA GPU, its memory and bf16 support, against training.precision (the run's own rule,
    dsum.model.precision.choose_precision); the torch build and driver."""
    import torch

    from dsum.model.precision import choose_precision

    build = torch_build()
    if not torch.cuda.is_available():
        seen = nvidia_smi_gpus()
        if seen:
            name, driver = seen[0]
            return Check("GPU", FAIL, (
                f"nvidia-smi sees {len(seen)}× {name} (driver {driver}) but {build} cannot use it. "
                f"Fix: update the NVIDIA driver to {MIN_DRIVER.get((torch.version.cuda or '12').split('.')[0], '525.60.13')} "
                "or newer (e.g. `sudo apt install nvidia-driver-570`), or install a torch wheel built for the CUDA "
                "your driver runs (PyTorch's previous-versions page lists them) with `uv pip install`"
            ))
        if precision in ("fp16", "bf16"):
            return Check("GPU", FAIL, f"no CUDA GPU visible; training.precision={precision} needs one "
                                      f"(--set training.precision=auto trains in fp32 on CPU); {build}")
        return Check("GPU", WARN, f"no CUDA GPU visible: fp32 on CPU, slow (fine only for tiny models); {build}")
    props = torch.cuda.get_device_properties(0)
    bf16 = torch.cuda.is_bf16_supported()
    count = torch.cuda.device_count()
    driver = next((d for _, d in nvidia_smi_gpus()), "?")
    detail = f"{count}× {props.name}, {props.total_memory / GIB:.1f} GiB, bf16 {'yes' if bf16 else 'no'}, driver {driver}; {build}"
    try:
        choice = choose_precision(precision, model_type, cuda=True, bf16=bf16)
    except UserError as exc:
        return Check("GPU", FAIL, f"{detail}; {exc}")
    resolved = f"{detail}; precision {precision} → {choice.precision} for {model_type}"
    if choice.note:
        return Check("GPU", WARN if choice.warning else OK, f"{resolved} ({choice.note})")
    return Check("GPU", OK, resolved)


def check_data(cfg: Config) -> Check:
    """Every data file of the config exists and passes `dsum data check` without errors."""
    from dsum.data.check import check_files

    d = cfg.data
    paths = [*d.train, d.dev, d.test] + ([d.sample_submission] if d.sample_submission else [])
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        return Check("data", FAIL, f"missing: {', '.join(missing)}")
    try:
        reports = check_files(paths)
    except UserError as exc:
        return Check("data", FAIL, str(exc))
    rows = ", ".join(f"{Path(r.path).name} {r.rows}" for r in reports)
    errors = [f"{Path(f.file).name}: {f.message}" for r in reports for f in r.findings if f.level == "error"]
    warnings = sum(f.level == "warning" for r in reports for f in r.findings)
    if errors:
        return Check("data", FAIL, f"{len(errors)} error(s), e.g. {errors[0]} (see dsum data check)")
    if warnings:
        return Check("data", WARN, f"rows: {rows}; {warnings} warning(s) (see dsum data check)")
    return Check("data", OK, f"rows: {rows}; no problem found")


def check_engine(cfg: Config) -> Check:
    """generation.engine: its device, compute type and what would run on generate() (dsum.model.engine_ct2)."""
    from dsum.model.engine_ct2 import engine_summary
    from dsum.model.loading import load_model_config

    try:
        level, detail = engine_summary(cfg, load_model_config(cfg.model))
    except UserError as exc:
        return Check("engine", WARN, f"generation.engine={cfg.generation.engine}; the model's config does not load: {exc}")
    return Check("engine", level, detail)


def check_model(model: ModelConfig) -> Check:
    """The model loads from here: tiny (built offline), a local folder, the HF cache, or a reachable hub."""
    if model.tiny is not None:
        return Check("model", OK, f"tiny {model.tiny.architecture}, built offline from the config")
    from dsum.model.gguf import is_gguf, local_model

    if is_gguf(model.name):  # converted once to a float32 folder (dsum.model.gguf)
        try:
            return Check("model", OK, f"GGUF file {model.name}, loaded as {local_model(model.name)}")
        except UserError as exc:
            return Check("model", FAIL, str(exc))
    folder = Path(model.name)
    if folder.is_dir():
        if (folder / "config.json").is_file():
            return Check("model", OK, f"local folder {folder}")
        return Check("model", FAIL, f"local folder {folder} has no config.json (not a save_pretrained folder)")
    if cached_config(model.name):
        return Check("model", OK, f"{model.name} is in the Hugging Face cache")
    from dsum.util.hub import hub_reachable, unreachable_reason

    if not hub_reachable():
        return Check("model", FAIL, f"{model.name}: {unreachable_reason()}")
    from huggingface_hub import model_info
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        model_info(model.name, timeout=5)
    except RepositoryNotFoundError:
        return Check("model", FAIL, f"{model.name} is not on the hub (check the name) and not a local folder")
    except Exception as exc:  # offline, DNS, timeout, proxy: all mean "cannot download from here"
        return Check("model", FAIL, f"{model.name} is not cached and the hub is unreachable ({type(exc).__name__})")
    return Check("model", OK, f"{model.name} reachable on the hub (downloaded at the first run)")


def check_tokenizer(cfg: Config) -> Check:
    """The tokenizer loads, and one dev example framed as the model will see it: ids and pieces.

    ✗ when the labels would not end in eos (the model would never learn to stop), when a `#…#` token
    is split into pieces, or when a configured length is beyond the model's positions. Decoder-only
    models: the prompt rendered by the chat template, labels ending in its end-of-turn token (their
    vocabulary spells `#…#` tokens in pieces: none are added, new rows would stay untrained under LoRA).
    """
    from dsum.data.files import read_examples
    from dsum.data.text import special_tokens_for
    from dsum.model.loading import (
        check_lengths,
        load_model_and_tokenizer,
        load_model_config,
        with_model_defaults,
    )
    from dsum.model.tokenization import (
        add_data_tokens,
        framing_for,
        load_tokenizer,
        split_data_tokens,
    )

    try:
        examples = read_examples(cfg.data.dev, require_summary=True)
        model_config = load_model_config(cfg.model)
        cfg = with_model_defaults(cfg, model_config)
        check_lengths(cfg.model, cfg.generation.max_new_tokens, model_config)
        texts = [ex.dialogue for ex in examples] + [ex.summaries[0] for ex in examples]
        specials = special_tokens_for(texts)
        if cfg.model.tiny is not None:
            train = [t for path in cfg.data.train for ex in read_examples(path, require_summary=True) for t in (ex.dialogue, ex.summaries[0])]
            model, tokenizer = load_model_and_tokenizer(cfg.model, specials, train, prompt=cfg.prompt)
            model_config = model.config
        else:
            tokenizer = load_tokenizer(cfg.model.name)
        framing = framing_for(model_config, tokenizer, cfg.prompt)
        if framing.data_tokens:
            add_data_tokens(tokenizer, specials)  # as training adds them (a tiny model's are there already)
        example = examples[0]
        row = framing.encode_examples([example.dialogue], [example.summaries[0]],
                                      cfg.model.max_source_length, cfg.model.max_target_length).rows[0]
        source, label = framing.parts(row)
    except UserError as exc:
        return Check("tokenizer", FAIL, str(exc))

    def shown(ids: list[int], head: int, tail: int = 0) -> str:
        cut = ids if len(ids) <= head + tail else [*ids[:head], None, *ids[len(ids) - tail :]]
        pieces = ["…" if i is None else readable_piece(tokenizer, i).replace("\n", "\\n") for i in cut]
        numbers = ["…" if i is None else str(i) for i in cut]
        return f"ids [{' '.join(numbers)}] pieces [{' '.join(pieces)}] ({len(ids)} ids)"

    detail = (
        f"{type(tokenizer).__name__}, {len(tokenizer)} tokens; {framing.describe()}\n"
        f"{example.fname} {framing.source_name}: {shown(source, 12, 3)}\n"
        f"{example.fname} summary: {shown(label, 16, 3)}"
    )
    split = split_data_tokens(tokenizer, specials) if framing.data_tokens else []
    if split:
        return Check("tokenizer", FAIL, f"{detail}\n#…# tokens split into pieces: {', '.join(split)}")
    if not label or label[-1] != framing.label_end:
        name = tokenizer.convert_ids_to_tokens(framing.label_end)
        return Check("tokenizer", FAIL, f"{detail}\nlabels do not end in {name}: "
                                        "the model would never learn to stop")
    return Check("tokenizer", OK, detail)


def readable_piece(tokenizer, token_id: int) -> str:
    """A token as text, a leading space shown as `▁` (byte-level pieces such as pko-t5's `ìķĪëħķ` decoded)."""
    token = tokenizer.convert_ids_to_tokens(token_id)
    if "▁" in token or token_id in tokenizer.all_special_ids or token in tokenizer.get_added_vocab():
        return token  # SentencePiece-style pieces and added tokens read as they are
    text = tokenizer.convert_tokens_to_string([token])
    return "▁" + text[1:] if text.startswith(" ") else text


def cached_config(name: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        found = try_to_load_from_cache(name, "config.json")
    except HFValidationError:  # not a valid repo id (e.g. a path that does not exist)
        return None
    return Path(found) if isinstance(found, str) else None


# The SOLAR team's generation.max_new_tokens 96 cut 19% of the summaries; 150 did not.
MIN_DECODER_ONLY_NEW_TOKENS = 150


def check_llm(cfg: Config) -> list[Check]:
    """The rows of decoder-only and LoRA configs: quantization's needs, the GPU memory estimate, the summary length."""
    import importlib.util

    import torch

    from dsum.model.quantization import bitsandbytes_description

    rows = []
    quantization = cfg.lora.quantization if cfg.lora is not None else "none"
    asked = quantization != "none" or cfg.training.optimizer == "paged_adamw_8bit"  # import bitsandbytes only then
    bnb = bitsandbytes_description() if asked and importlib.util.find_spec("bitsandbytes") is not None else None
    found = quantization_check(quantization, cfg.training.optimizer, torch.cuda.is_available(), bnb)
    if found is not None:
        rows.append(Check("quantization", *found))
    from dsum.data.korean import data_is_korean
    from dsum.model.loading import load_model_config, with_model_defaults
    from dsum.model.tokenization import is_decoder_only

    try:
        model_config = load_model_config(cfg.model)
    except UserError as exc:  # the model row says why; without the config there is nothing to estimate
        if cfg.lora is not None:
            rows.append(Check("GPU memory", WARN, f"no estimate: the model's config does not load ({exc})"))
        return rows
    decoder_only = is_decoder_only(model_config)
    if not decoder_only and cfg.lora is None:
        return rows
    estimate = training_estimate(cfg, model_config)
    if cfg.lora is not None and estimate.lora_params == 0:
        rows.append(Check("GPU memory", FAIL, f"lora.target_modules={cfg.lora.target_modules} names no layer of the "
                                              "model (peft refuses it): use all-linear or layer names such as q_proj, v_proj"))
    else:
        rows.append(Check("GPU memory", *memory_check(estimate, gpu_memory())))
    if decoder_only:
        tokens = with_model_defaults(cfg, model_config).generation.max_new_tokens
        # The advice is for Korean data (data.language, or detected from the dev dialogues).
        if tokens < MIN_DECODER_ONLY_NEW_TOKENS and data_is_korean(cfg.data):
            rows.append(Check("max_new_tokens", WARN, (
                f"generation.max_new_tokens={tokens} for a decoder-only model: Korean takes about a token a syllable "
                f"and the SOLAR team's 96 cut 19% of the summaries; set it to {MIN_DECODER_ONLY_NEW_TOKENS} or more "
                "(unset: 160)")))
        else:
            rows.append(Check("max_new_tokens", OK, f"generation.max_new_tokens={tokens}"))
    return rows


def quantization_check(quantization: str, optimizer: str, cuda: bool, bitsandbytes: str | None) -> tuple[str, str] | None:
    """(level, detail) for the settings that need bitsandbytes; None when nothing needs them.

    4bit/8bit run wherever bitsandbytes runs (CUDA, or the CPU: slowly); paged optimizers need CUDA too.
    `bitsandbytes`: what dsum.model.quantization.bitsandbytes_description says (version, backend), None when it
    is not installed.
    """
    needs = [f"lora.quantization={quantization}"] if quantization in ("4bit", "8bit") else []
    if optimizer == "paged_adamw_8bit":
        needs.append("training.optimizer=paged_adamw_8bit")
    if not needs:
        return None
    what = " and ".join(needs)
    fixes = []
    if not bitsandbytes:
        fixes.append("bitsandbytes is not installed: install bitsandbytes: uv sync")
    if optimizer == "paged_adamw_8bit" and not cuda:
        fixes.append("paged optimizers need a CUDA GPU and none is visible: set training.optimizer: adamw_torch")
    if fixes:
        return FAIL, f"{what}: {'; '.join(fixes)}"
    where = "CUDA GPU visible" if cuda else "no CUDA GPU: quantized layers run on the CPU (slow; fine for small models)"
    return OK, f"{what}: {bitsandbytes}; {where}"


def training_estimate(cfg: Config, model_config):
    """dsum.model.memory's estimate of the config's training step and dev evaluation (optimizer as CUDA resolves auto)."""
    from dsum.model.loading import with_model_defaults
    from dsum.model.memory import estimate_training_memory, eval_generation
    from dsum.model.tokenization import is_decoder_only
    from dsum.verbs.trainer import optimizer_name

    m, t = cfg.model, cfg.training
    decoder_only = is_decoder_only(model_config)
    paged = optimizer_name(cfg, cuda=True) == "paged_adamw_8bit"  # the optimizer a CUDA run of this config uses
    return estimate_training_memory(
        model_config, cfg.lora, cfg.lora.quantization if cfg.lora is not None else "none", t.batch_size,
        m.max_source_length + m.max_target_length if decoder_only else m.max_source_length,
        t.gradient_checkpointing, paged, t.precision, target_len=None if decoder_only else m.max_target_length,
        label_tokens=label_positions(cfg) if decoder_only else None,
        generation=eval_generation(with_model_defaults(cfg, model_config)),  # a decoder-only model's 160 new tokens
    )


def label_positions(cfg: Config) -> int:
    """Logit positions of a decoder-only training row (dsum.model.label_loss: the output layer runs at label positions
    only): the summary (max_target_length), or with training.packing up to half the row (several examples, each
    summary shorter than its dialogue)."""
    m = cfg.model
    return (m.max_source_length + m.max_target_length) // 2 if cfg.training.packing else m.max_target_length


def memory_check(estimate, gpu_bytes: int | None) -> tuple[str, str]:
    """(level, detail) of a training memory estimate against the GPU's memory (None: no GPU visible).

    ✗ beyond the GPU, naming the settings that lower it; ! within 10% of it (the activations are an
    approximation); ✓ otherwise.
    """
    need = estimate.describe()
    if gpu_bytes is None:
        return WARN, f"training needs {need}; no CUDA GPU visible to compare it with"
    have = f"the GPU's {gpu_bytes / GIB:.1f} GiB"
    if estimate.total > gpu_bytes:
        settings = (
            ([f"training.batch_size (now {estimate.batch_size}; raise training.gradient_accumulation_steps to keep the "
              "effective batch)"] if estimate.batch_size > 1 else [])
            + ["model.max_source_length"]
            + (["training.gradient_checkpointing: true"] if not estimate.gradient_checkpointing else [])
            + (["lora.quantization: 4bit" if estimate.lora_params else "a lora section (LoRA, quantization: 4bit)"]
               if estimate.quantization != "4bit" else [])
        )
        return FAIL, f"training needs {need}, more than {have}; lower it with {', '.join(settings)}"
    if estimate.total > 0.9 * gpu_bytes:
        return WARN, f"training needs {need}, within 10% of {have} (activations are approximate)"
    return OK, f"training needs {need} of {have}"


def check_tracking(cfg: Config) -> Check:
    """Where the tracker will write; for W&B the mode the run will get (the tracker's own rule)."""
    from dsum.runs.tracking import mlflow_uri, wandb_key_source, wandb_mode

    t = cfg.tracking
    if t.backend == "none":
        return Check("tracking", OK, "tracking off (tracking.backend=none)")
    if t.backend == "mlflow":
        return Check("tracking", OK, f"MLflow, experiment {t.project}, store {mlflow_uri(cfg)}")
    if t.backend == "tensorboard":
        return Check("tracking", OK, "TensorBoard event files in <run>/tensorboard")
    mode, login = wandb_mode(t), wandb_key_source()
    if mode == "disabled":
        return Check("tracking", WARN, "W&B disabled (tracking.mode or WANDB_MODE): nothing will be logged")
    if mode == "offline":
        why = "no API key (WANDB_API_KEY, .env or wandb login)" if login is None else "offline mode set"
        return Check("tracking", WARN, f"W&B offline: {why}; run wandb sync later")
    return Check("tracking", OK, f"W&B online, project {t.project}, key from {login or 'unknown'}")


def check_disk(cfg: Config) -> Check:
    """Free space where the run will be written against what its checkpoints will take."""
    target = Path(cfg.general.output_dir).resolve()
    existing = next(p for p in (target, *target.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    params, source = parameter_count(cfg.model, cfg.lora)
    copies = cfg.training.save_total_limit + 1  # + checkpoint-best
    need = params * CHECKPOINT_BYTES_PER_PARAM * copies
    detail = (f"{free / GIB:.1f} GiB free at {existing}; checkpoints need ~{need / GIB:.2f} GiB "
              f"({copies} × {params / 1e6:.1f}M params × {CHECKPOINT_BYTES_PER_PARAM} B, {source})")
    if free < need:
        return Check("disk", FAIL, detail)
    if free < 2 * need:
        return Check("disk", WARN, detail + "; little room for anything else")
    return Check("disk", OK, detail)


def parameter_count(model: ModelConfig, lora: LoraConfig | None = None) -> tuple[int, str]:
    """(parameters a checkpoint holds, where the number comes from): every weight, or with LoRA the adapters
    alone (fp32 adapters and their AdamW moments: the same 12 bytes a parameter)."""
    if model.tiny is not None and lora is None:
        return tiny_parameter_count(model.tiny), "tiny config, approximate"
    from dsum.model.memory import build_on_meta, lora_parameter_count

    if model.tiny is not None:
        from dsum.model.loading import load_model_config

        model_config = load_model_config(model)
    else:
        from dsum.model.gguf import is_gguf, local_model

        folder = Path(local_model(model.name) if is_gguf(model.name) and Path(model.name).is_file() else model.name)
        config = folder / "config.json" if (folder / "config.json").is_file() else cached_config(model.name)
        if config is None:
            return KOBART_PARAMS, "model config not at hand: assumed KoBART size"
        from transformers import AutoConfig

        model_config = AutoConfig.from_pretrained(config.parent)
    built = build_on_meta(model_config)  # shapes only: no memory, no weights read
    if lora is not None:
        return lora_parameter_count(built, lora.r, lora.target_modules), f"LoRA r{lora.r} adapters only"
    return sum(p.numel() for p in built.parameters()), "from the model's config.json"


def tiny_parameter_count(tiny: TinyModelConfig) -> int:
    """Shared embeddings + per layer: encoder (self-attention 4d² + FFN 2·d·ffn), decoder (two attentions + FFN)."""
    d = tiny.d_model
    positions = 2 * 1026 * d if tiny.architecture == "bart" else 0  # BART learns 1024 (+2) positions per side
    return tiny.vocab_size * d + positions + tiny.layers * (12 * d * d + 4 * d * tiny.ffn_dim)


def check_analyser(name: str) -> Check:
    """The morpheme analyser of the board's metric imports and splits a Korean greeting."""
    if name == "whitespace":
        return Check("analyser", WARN, "metric.tokenizer=whitespace: scores will not match the board (mecab)")
    from dsum.metric.rouge import get_analyser

    try:
        morphs = get_analyser(name)("안녕하세요")
    except Exception as exc:  # missing package or dictionary: the message says which
        return Check("analyser", FAIL, f"{name}: {type(exc).__name__}: {exc}")
    if not morphs:
        return Check("analyser", FAIL, f"{name} returned no morphemes for 안녕하세요")
    return Check("analyser", OK, f"{name}: 안녕하세요 → {' / '.join(morphs)}")


def has_failures(checks: list[Check]) -> bool:
    return any(c.level == FAIL for c in checks)
