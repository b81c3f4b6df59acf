"""CTranslate2, dsum's second generation engine (generation.engine=ctranslate2), behind dsum.model.generate.

The generator (dsum.model.generate) keeps everything but the decoding loop: it frames the dialogues,
forms the length-sorted batches, and decodes the outputs by the model's framing. This module turns
the model in memory into a CTranslate2 model once, and runs one batch of the framing's token ids:

- Ids in, ids out. The converted model's vocabulary is the ids themselves written as text ("0", "1",
  ...), so the engine reads exactly the ids dsum's framing made (added #…# tokens, chat templates and
  all) and its outputs are handed back as generate() returns them (seq2seq: opening with the decoder
  start; decoder-only: the continuation), for the same framing to decode.
- Conversion from the loaded model object (a LoRA merged into its base in memory first, the base's
  weights put back bit for bit afterwards): no save_pretrained and reload. `dsum predict` keeps the
  converted model in the cache (key: sha256 of the weights, the config, the compute type and the
  CTranslate2 version), written to a temporary folder and renamed, so it is whole or absent; the
  evaluation inside training converts the current weights into a temporary folder each time.
- Two gaps of the converter are closed here: a BartConfig without `normalize_before` (dsum's tiny
  demo config; BART is post-norm) and T5 under transformers 5, which forces tie_word_embeddings=True
  and keeps the real meaning in scale_decoder_outputs (pko-t5's decoder outputs are not scaled).

What the engine cannot do runs on Hugging Face generate() with one log line saying why
(fallback_reason): a logit ensemble (logits processors), a 4/8-bit bitsandbytes model, a model type the
converter lacks; rows generated again with their first tokens banned (dsum.model.degenerate) go to
generate() too. Sampling (--samples) is top-p here (SAMPLING): CTranslate2 has no epsilon sampling.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from dsum.model.tokenization import is_decoder_only
from dsum.util.atomic import cache_folder
from dsum.util.errors import UserError

log = logging.getLogger(__name__)

COMPUTE_TYPES = ("auto", "float32", "int8", "int8_float16", "int16", "float16", "bfloat16")
# Candidates drawn for MBR on this engine: nucleus sampling over the whole vocabulary (topk 0), p = 0.9,
# temperature 1. HF's epsilon sampling (cut tokens below 0.02) has no counterpart here; a top-p of 0.9
# keeps about the same head of a peaked distribution and, unlike top-k, adapts to a flat one.
SAMPLING = {"sampling_topk": 0, "sampling_topp": 0.9, "sampling_temperature": 1.0}
# Written last into a converted folder: the folder is complete when it is there.
DONE_FILE = "dsum_ct2.json"
_PRECISION_TYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def cache_root() -> Path:
    """Where converted models are kept: $DSUM_CACHE/ctranslate2, else $XDG_CACHE_HOME or ~/.cache, /dsum/ctranslate2."""
    from dsum.model.gguf import cache_root as gguf_cache

    return gguf_cache().parent / "ctranslate2"


def preload_cuda_libraries() -> None:
    """Make libcublas.so.12 findable: torch cu128 installs it (nvidia-cublas-cu12) where the loader does not
    look; importing torch loads it with its own path, and the package folder is loaded from explicitly too."""
    import ctypes
    import importlib.util

    import torch  # noqa: F401  (torch's CUDA build opens the nvidia-* libraries it ships)

    spec = importlib.util.find_spec("nvidia.cublas")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        for name in ("libcublasLt.so.12", "libcublas.so.12"):
            path = Path(folder) / "lib" / name
            if path.is_file():
                with contextlib.suppress(OSError):
                    ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)


def engine_device() -> str:
    """cuda when a GPU is there (dsum places models on it), else cpu."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def supported_compute_types(device: str) -> set[str]:
    import ctranslate2

    if device == "cuda":
        preload_cuda_libraries()
    return set(ctranslate2.get_supported_compute_types(device))


def resolve_compute_type(compute_type: str, device: str, precision: str = "fp32") -> str:
    """auto: float32 on a CPU; on a GPU training's precision (bf16 → bfloat16, fp16 → float16; float32 where the
    GPU lacks it). Another compute type: itself, once the device is known to run it (else a UserError)."""
    supported = supported_compute_types(device)
    if compute_type == "auto":
        wanted = "float32" if device == "cpu" else _PRECISION_TYPES.get(precision, "float32")
        return wanted if wanted in supported else "float32"
    if compute_type not in supported:
        raise UserError(
            f"generation.compute_type={compute_type}: CTranslate2 on this {device.upper()} runs "
            f"{', '.join(sorted(supported))}, not {compute_type}; set generation.compute_type=auto (or one of those)"
        )
    return compute_type


def check_engine(gen, checkpoints: int = 1) -> None:
    """What generation.engine=ctranslate2 cannot do, refused before any model loads: a compute type this device
    lacks, a logit ensemble (several --checkpoint) when the config asks for the engine by name, and a compute type
    given to generate(), which would silently ignore it."""
    if gen.engine != "ctranslate2":
        if gen.compute_type != "auto":
            raise UserError(
                f"generation.compute_type={gen.compute_type} applies to generation.engine=ctranslate2 only (generate() runs "
                "at training's precision): add --set generation.engine=ctranslate2, or leave compute_type at auto"
            )
        return
    if checkpoints > 1 and "engine" in gen.model_fields_set:
        raise UserError(
            "generation.engine=ctranslate2 cannot run a logit ensemble of several --checkpoint (CTranslate2 has no "
            "logits processors): set generation.engine=hf, or combine them with dsum ensemble mbr or dsum average"
        )
    resolve_compute_type(gen.compute_type, engine_device())


def fallback_reason(model, gen=None) -> str | None:
    """Why this model (with these generation settings) generates on Hugging Face generate() instead of
    CTranslate2 (None: it need not)."""
    from ctranslate2.converters.transformers import _MODEL_LOADERS

    members = getattr(model, "members", None)
    if members is not None and len(members) > 1:
        return "a logit ensemble needs logits processors, which CTranslate2 lacks"
    base = _base_model(model)
    if getattr(base, "is_loaded_in_4bit", False) or getattr(base, "is_loaded_in_8bit", False):
        return "a bitsandbytes-quantized model is not converted at run time (merge and export it, or use lora.quantization=none)"
    name = base.config.__class__.__name__
    if name not in _MODEL_LOADERS:
        return f"CTranslate2's converter has no {name} ({base.config.model_type})"
    if gen is not None and is_decoder_only(base.config) and (gen.repetition_penalty != 1 or gen.no_repeat_ngram_size):
        # generate() counts the prompt's tokens as already generated; CTranslate2 counts what it generates and, in a
        # batch, the part of the longer prompts it feeds step by step: the summaries would depend on the batch.
        return ("a decoder-only model's repetition_penalty / no_repeat_ngram_size count the prompt in generate(), "
                "not in CTranslate2 (set them to 1.0 / 0 to use it)")
    return None


def engine_summary(cfg, model_config) -> tuple[str, str]:
    """(ok | warn | fail, one line) for `dsum doctor`: the engine, its device and compute type, and what would run on
    generate() instead."""
    from ctranslate2.converters.transformers import _MODEL_LOADERS

    from dsum.model.precision import resolve_precision

    gen = cfg.generation
    if gen.engine != "ctranslate2":
        return "ok", "hf: transformers generate() (generation.engine=ctranslate2 runs the same ids faster; see README)"
    device = engine_device()
    try:
        compute = resolve_compute_type(gen.compute_type, device, resolve_precision(cfg.training.precision, model_config.model_type, training=False))
    except (UserError, RuntimeError, OSError) as exc:  # a compute type the device lacks, CUDA libraries not found
        return "fail", str(exc)
    falls = ["logit ensembles (several --checkpoint)", "rows generated again after an empty answer"]
    level = "ok"
    if model_config.__class__.__name__ not in _MODEL_LOADERS:
        level = "warn"
        falls.insert(0, f"everything (the converter lacks {model_config.model_type})")
    if cfg.lora is not None and cfg.lora.quantization != "none":
        falls.insert(0, f"training's evaluation ({cfg.lora.quantization} base)")
    if is_decoder_only(model_config) and (gen.repetition_penalty != 1 or gen.no_repeat_ngram_size):
        level = "warn"
        falls.insert(0, "everything (decoder-only repetition_penalty / no_repeat_ngram_size count the prompt)")
    return level, f"ctranslate2 on {device} ({compute}); generate() runs {', '.join(falls)}"


def _base_model(model):
    """The transformers model under a peft wrapper or a one-member ensemble."""
    members = getattr(model, "members", None)
    if members is not None:
        model = members[0]
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@contextlib.contextmanager
def merged_weights(model):
    """The transformers model with any LoRA adapter merged into it; on exit the adapter is unmerged and
    the base weights it touched are restored bit for bit (a merge and unmerge alone round the weights)."""
    import torch

    if not hasattr(model, "merge_adapter"):
        yield _base_model(model)
        return
    saved = {name: p.detach().clone() for name, p in model.named_parameters() if ".base_layer." in name}
    model.merge_adapter()
    try:
        yield model.get_base_model()
    finally:
        model.unmerge_adapter()
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name in saved:
                    parameter.copy_(saved[name])


class _IdTokens:
    """What CTranslate2's loaders ask of a tokenizer, with every token written as its id: the vocabulary is
    "0" … "N-1" and the special tokens are their ids, so the engine is fed and returns dsum's ids."""

    def __init__(self, tokenizer, config):
        self.vocab_size = config.get_text_config(decoder=True).vocab_size
        self._tokenizer = tokenizer
        for name in ("bos", "eos", "unk", "pad"):
            value = getattr(tokenizer, f"{name}_token_id", None)
            setattr(self, f"{name}_token", None if value is None else str(value))

    def get_vocab(self) -> dict[str, int]:
        return {str(i): i for i in range(self.vocab_size)}

    def convert_ids_to_tokens(self, ids):
        return [str(i) for i in ids] if isinstance(ids, (list, tuple)) else str(ids)

    def __len__(self) -> int:
        return self.vocab_size


@contextlib.contextmanager
def _converter_view(config):
    """Set what CTranslate2's loaders read on the config for the conversion, and put it back after."""
    changes = {}
    if config.model_type == "bart" and not hasattr(config, "normalize_before"):
        changes["normalize_before"] = False  # BART is post-norm; dsum's tiny config does not say so
    if config.model_type in ("t5", "mt5", "umt5") and hasattr(config, "scale_decoder_outputs"):
        # The loader scales decoder outputs when tie_word_embeddings is set; transformers 5 keeps that meaning here.
        changes["tie_word_embeddings"] = bool(config.scale_decoder_outputs)
    before = {key: getattr(config, key) for key in changes if hasattr(config, key)}
    for key, value in changes.items():
        setattr(config, key, value)
    try:
        yield
    finally:
        for key in changes:
            if key in before:
                setattr(config, key, before[key])
            else:
                delattr(config, key)


def _model_spec(model, tokenizer, compute_type: str):
    """The CTranslate2 model spec of a transformers model in memory (weights on the CPU, never the model's own
    tensors where the conversion would change them)."""
    import torch
    from ctranslate2.converters.transformers import _MODEL_LOADERS
    from ctranslate2.specs.model_spec import visit_spec

    loader = _MODEL_LOADERS[model.config.__class__.__name__]
    # The decoder-only loaders free each layer's attention and MLP once read (delattr), as they would free a model
    # they loaded themselves; this model goes on generating and training, so every submodule is put back.
    children = [(module, dict(module._modules)) for module in model.modules()]
    try:
        with torch.no_grad(), _converter_view(model.config):
            spec = loader(model, _IdTokens(tokenizer, model.config))
    finally:
        for module, kept in children:  # in their order: state_dict() (the cache key) and repr stay the same
            if list(module._modules) != list(kept):
                added = {name: child for name, child in module._modules.items() if name not in kept}
                module._modules.clear()
                module._modules.update({**kept, **added})

    def own_copy(layer, name, value):
        # The spec holds the model's own tensors; quantizing (optimize) rewrites them in place, which would change
        # the weights generate() and training go on using. float32 on the CPU is left as it is (no copy needed).
        if isinstance(value, torch.Tensor) and (compute_type != "float32" or value.device.type != "cpu"):
            setattr(layer, name.split("/")[-1], value.detach().to("cpu", copy=True))

    visit_spec(spec, own_copy)
    return spec


def weights_key(model, compute_type: str) -> str:
    """sha256 of the weights' content, the config, the compute type and the CTranslate2 version."""
    import ctranslate2
    import torch

    digest = hashlib.sha256(f"{ctranslate2.__version__}\n{compute_type}\n{model.config.to_json_string()}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:20]


def convert(model, tokenizer, compute_type: str, folder: Path) -> Path:
    """Write `model` (in memory) as a CTranslate2 model into `folder`, whole or not at all (temp folder + rename)."""
    spec = _model_spec(model, tokenizer, compute_type)
    spec.validate()
    spec.optimize(quantization=compute_type)
    with cache_folder(folder, DONE_FILE) as staging:
        spec.save(str(staging))
        (staging / DONE_FILE).write_text(json.dumps({"compute_type": compute_type}) + "\n", encoding="utf-8")
    return folder


@dataclass
class Engine:
    """A converted model, ready to generate batches of dsum's token ids."""

    model: object  # ctranslate2.Translator (seq2seq) or ctranslate2.Generator (decoder-only)
    seq2seq: bool
    compute_type: str
    device: str
    key: str | None = None  # the weights' key (None: converted for one evaluation, not kept)

    def takes(self, settings: dict) -> bool:
        """Whether these generate() settings are ones the engine runs (else the rows go to generate())."""
        return not settings.get("begin_suppress_tokens")

    def generate(self, batch: Sequence[Sequence[int]], settings: dict, ids, sampling: bool = False) -> list[list[int]]:
        """The batch's sequences as generate() returns them (num_return_sequences per row, grouped by row):
        seq2seq ones open with the decoder start, decoder-only ones are the continuation.

        `ids`: the model's generation_config, whose ids generate() uses: eos_token_id (one or a list: where
        it stops), decoder_start_token_id, and forced_eos_token_id (BART's: generate() puts eos in the last
        place when max_new_tokens is reached; here one token fewer is generated and the eos appended).
        """
        import torch

        k = settings.get("num_return_sequences", 1)
        stop = ids.eos_token_id if isinstance(ids.eos_token_id, list) else [ids.eos_token_id]
        options = dict(
            beam_size=1 if sampling else settings["num_beams"],
            num_hypotheses=k,
            length_penalty=settings["length_penalty"],
            repetition_penalty=settings["repetition_penalty"],
            no_repeat_ngram_size=settings["no_repeat_ngram_size"],
            end_token=[str(i) for i in stop],
            return_end_token=True,
        )
        if settings.get("suppress_tokens"):
            options["suppress_sequences"] = [[str(i)] for i in settings["suppress_tokens"]]
        if sampling:
            import ctranslate2

            ctranslate2.set_random_seed(torch.initial_seed() % 2**32)  # the seed dsum gave torch (general.seed)
            options.update(SAMPLING)
        tokens = [[str(i) for i in row] for row in batch]
        forced = getattr(ids, "forced_eos_token_id", None)
        forced = forced[0] if isinstance(forced, list) else forced
        high = settings["max_new_tokens"] - (forced is not None)
        low = min(settings.get("min_new_tokens") or 0, high)
        if self.seq2seq:
            results = self.model.translate_batch(
                tokens, max_decoding_length=high, min_decoding_length=low, max_input_length=0, **options
            )
            # Every token is its id written out (_IdTokens): the hypotheses read back as ids.
            sequences = [[ids.decoder_start_token_id, *map(int, row)] for result in results for row in result.hypotheses[:k]]
        else:
            results = self.model.generate_batch(
                tokens, max_length=high, min_length=low, include_prompt_in_result=False, **options
            )
            sequences = [list(row) for result in results for row in result.sequences_ids[:k]]
        if forced is not None:
            sequences = [row if row[-1] in stop else [*row, forced] for row in sequences]
        return sequences


_LOGGED: set[str] = set()  # fallback reasons already said in this process (training evaluates every epoch)
_KEPT: dict[str, Engine] = {}  # the last engine loaded from the cache, reused while the weights are the same


def engine_for(model, tokenizer, gen, precision: str = "fp32", keep: bool = True, reopen: bool = False) -> Engine | None:
    """The CTranslate2 engine for `model` as it is now, or None where generate() runs (engine hf, or a
    fallback, said once in the log). keep: convert once into the cache and reuse it (dsum predict, tune);
    else convert into a temporary folder (the evaluation inside training: the weights change every time).
    reopen: a new engine even when one is kept (sampling: CTranslate2's random generator is per worker thread,
    seeded once when the thread first draws, so only fresh threads make a seeded pass repeat its draws).
    `gen`: the GenerationConfig (engine, compute_type, and the settings that decide a fallback)."""
    if gen.engine != "ctranslate2":
        return None
    reason = fallback_reason(model, gen)
    if reason is not None:
        if reason not in _LOGGED:
            log.info(f"generation.engine=ctranslate2: generating with Hugging Face generate() instead, as {reason}")
            _LOGGED.add(reason)
        return None
    device = "cuda" if next(model.parameters()).device.type == "cuda" else "cpu"
    resolved = resolve_compute_type(gen.compute_type, device, precision)
    seq2seq = not is_decoder_only(model.config)
    with merged_weights(model) as plain:
        if not keep:
            with tempfile.TemporaryDirectory(prefix="dsum-ct2-") as scratch:
                folder = convert(plain, tokenizer, resolved, Path(scratch) / "model")
                return Engine(_open(folder, seq2seq, device, resolved), seq2seq, resolved, device)
        key = f"{plain.config.model_type}-{weights_key(plain, resolved)}"
        if key in _KEPT and not reopen:
            return _KEPT[key]
        folder = cache_root() / key
        if not (folder / DONE_FILE).is_file():
            log.info(f"converting the model for CTranslate2 ({resolved}; once, kept in {folder.parent})")
            convert(plain, tokenizer, resolved, folder)
    _KEPT.clear()  # one kept engine at a time: its memory is the model's again
    _KEPT[key] = Engine(_open(folder, seq2seq, device, resolved), seq2seq, resolved, device, key)
    return _KEPT[key]


def _open(folder: Path, seq2seq: bool, device: str, compute_type: str):
    import ctranslate2
    import torch

    if device == "cuda":
        preload_cuda_libraries()
    threads = torch.get_num_threads() if device == "cpu" else 0
    kind = ctranslate2.Translator if seq2seq else ctranslate2.Generator
    return kind(str(folder), device=device, compute_type=compute_type, intra_threads=threads)
