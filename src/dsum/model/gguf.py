"""llama.cpp GGUF files as models: `model.name` and `dsum predict --checkpoint` may name a `.gguf` file.

transformers reads a GGUF file with `gguf_file=` (through the `gguf` package) and dequantizes its
weights to float32: ~20 s for SmolLM2-135M, about a minute for a 1.5B model. A model loaded that way
refuses `save_pretrained` ("quantized with gguf and is not serializable"), so its adapters could not
be merged and exported, and every command would pay the conversion again. dsum converts a file once
into a plain save_pretrained folder (float32 safetensors, config, generation config, the tokenizer
with its chat template) in its cache, and from then on loads that folder like any local model:

    <cache>/gguf/<file stem>-<key>/      key: sha256 of the file's absolute path, size and mtime

The cache is $DSUM_CACHE/gguf, else $XDG_CACHE_HOME/dsum/gguf, else ~/.cache/dsum/gguf. A changed file
(another size or modification time) is converted again. A model loaded from a GGUF file keeps the
file's absolute path as its name, so an adapter trained on it names the file as its base and reloads
it (converted again from the file when the cache was cleared).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from pathlib import Path

from dsum.util.atomic import cache_folder
from dsum.util.errors import UserError, first_line

log = logging.getLogger(__name__)

# peft reads <base>/config.json when it saves adapters, to tell whether the base's vocabulary changed; a base named by
# its .gguf file has none and peft warns at every save. dsum adds no tokens to a decoder-only model: nothing changed.
warnings.filterwarnings("ignore", message=r"Could not find a config file in .*\.gguf - will assume", category=UserWarning)

SUFFIX = ".gguf"
# Written last into a converted folder: the folder is complete when it is there.
SOURCE_FILE = "dsum_gguf_source.json"


def is_gguf(name: str | os.PathLike | None) -> bool:
    """True when a model name is a `.gguf` file name (whether or not the file exists)."""
    return name is not None and str(name).lower().endswith(SUFFIX)


def cache_root() -> Path:
    """Where converted GGUF models are kept: $DSUM_CACHE/gguf, $XDG_CACHE_HOME/dsum/gguf or ~/.cache/dsum/gguf."""
    if os.environ.get("DSUM_CACHE"):
        return Path(os.environ["DSUM_CACHE"]) / "gguf"
    base = Path(os.environ["XDG_CACHE_HOME"]) if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "dsum" / "gguf"


def gguf_file(name: str | os.PathLike) -> Path:
    """The named GGUF file, absolute; a UserError when it is not there."""
    path = Path(name).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise UserError(f"GGUF file {path} {what} (relative paths start from {Path.cwd()}): name a llama.cpp .gguf model file")
    return path.resolve()


def converted_folder(path: Path) -> Path:
    """Where the conversion of a GGUF file is (or will be) kept in the cache."""
    stat = path.stat()
    key = hashlib.sha256(f"{path}\n{stat.st_size}\n{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_root() / f"{path.stem}-{key}"


def local_model(name: str | os.PathLike) -> str:
    """The folder to load for a model name: a `.gguf` file's converted folder (converting it once), else the name."""
    if not is_gguf(name):
        return str(name)
    path = gguf_file(name)
    folder = converted_folder(path)
    if not (folder / SOURCE_FILE).is_file():
        convert(path, folder)
    return str(folder)


def convert(path: Path, folder: Path) -> Path:
    """Dequantize a GGUF file to a float32 save_pretrained folder (model and tokenizer), atomically.

    The model is rebuilt from the GGUF's config without its quantization_config on the meta device and
    takes the loaded tensors as they are (no second copy in memory); tied output layers stay tied.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401  (transformers reads the file through it)
    except ImportError:
        raise UserError("loading a .gguf model needs the gguf package: run `uv sync` (or uv pip install gguf)") from None
    log.info(f"converting {path.name} to a float32 model folder (once; kept in {folder.parent})")
    where, name = str(path.parent), str(path)
    try:
        config = AutoConfig.from_pretrained(where, gguf_file=name)
        tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise UserError(f"cannot load GGUF file {path}: {first_line(exc)} (transformers reads GGUF files of the "
                        "architectures it lists as GGUF-supported, e.g. llama, qwen2, mistral, gemma)") from None
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    model.tie_weights()
    # Non-persistent buffers (rotary frequencies) are not in the state dict: take the loaded model's.
    for module_name, buffer_name in [(m, b) for m, mod in model.named_modules() for b, _ in mod.named_buffers(recurse=False)]:
        owner = model.get_submodule(module_name)
        setattr(owner, buffer_name, getattr(loaded.get_submodule(module_name), buffer_name))
    model.generation_config = loaded.generation_config
    with cache_folder(folder, SOURCE_FILE) as staging:
        model.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        stat = path.stat()
        (staging / SOURCE_FILE).write_text(  # written last: its presence marks a whole conversion
            json.dumps({"gguf": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}, indent=2) + "\n",
            encoding="utf-8",
        )
    return folder
