"""QLoRA's base model: 4-bit NF4 or 8-bit weights through bitsandbytes, wherever bitsandbytes runs.

bitsandbytes 0.45+ has a CPU backend as well as CUDA (and ROCm, XPU): NF4 loading, a LoRA forward and
backward through frozen 4-bit layers and generation all run on the CPU (slowly, but for real), so
`lora.quantization` is refused only where bitsandbytes is missing. Paged optimizers page their state
to GPU memory: they need CUDA (`training.optimizer: paged_adamw_8bit` is refused without it; `auto`
picks them on CUDA only).
"""

from __future__ import annotations

import importlib.util

from dsum.util.errors import UserError

PAGED_OPTIMIZERS = ("paged_adamw_8bit",)


def bitsandbytes_installed() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def bitsandbytes_backend() -> str | None:
    """Where bitsandbytes runs its kernels here ("CUDA", "ROCm", "XPU" or "CPU"); None when it is not installed."""
    if not bitsandbytes_installed():
        return None
    from bitsandbytes import cextension

    return cextension.BNB_BACKEND


def bitsandbytes_description() -> str:
    """One phrase for `dsum doctor`: version, backend and the native library in use (or why none)."""
    backend = bitsandbytes_backend()
    if backend is None:
        return "bitsandbytes not installed"
    import bitsandbytes
    from bitsandbytes import cextension

    lib = getattr(getattr(cextension, "lib", None), "_lib", None)
    native = getattr(lib, "_name", None)
    library = f"native library {native.rsplit('/', 1)[-1]}" if native else "no native library (torch fallbacks)"
    return f"bitsandbytes {bitsandbytes.__version__}, {backend} backend, {library}"


def check_quantization(quantization: str) -> None:
    """4bit/8bit loading needs bitsandbytes (any backend it has: CUDA, or the CPU): refused before any work otherwise."""
    if quantization == "none":
        return
    if not bitsandbytes_installed():
        raise UserError(f"lora.quantization={quantization} needs the bitsandbytes package: run `uv sync` (or uv pip install bitsandbytes)")


def check_optimizer(optimizer: str) -> None:
    """Paged optimizers keep their state in CUDA unified memory: refused without a CUDA GPU."""
    import torch

    if optimizer in PAGED_OPTIMIZERS and not torch.cuda.is_available():
        raise UserError(
            f"training.optimizer={optimizer} pages its state through CUDA memory and no CUDA GPU is visible: "
            "set training.optimizer: adamw_torch (or auto, which picks it on CUDA only)"
        )


def device_map() -> dict | str:
    """Where bitsandbytes places a quantized model as it loads: the first CUDA GPU, else the CPU."""
    import torch

    return {"": 0} if torch.cuda.is_available() else "cpu"
