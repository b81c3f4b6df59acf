"""Which float precision a run uses, for training and for generation alike."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

from dsum.util.errors import UserError

log = logging.getLogger(__name__)

# T5 overflows in fp16 (its activations exceed 65,504: NaN losses on T4/V100), so `auto` never picks it.
FP16_UNSAFE = ("t5", "mt5", "umt5")


def resolve_precision(requested: str, model_type: str = "bart", training: bool = True) -> str:
    """auto → bf16 where the GPU has it, else fp16 (fp32 for T5), fp32 on CPU (`choose_precision` on this machine).

    Training refuses fp16/bf16 without a GPU; generation (training=False) then simply runs in fp32.
    """
    cuda = torch.cuda.is_available()
    choice = choose_precision(requested, model_type, cuda, cuda and torch.cuda.is_bf16_supported(), training)
    if choice.note:
        (log.warning if choice.warning else log.info)(choice.note)
    return choice.precision


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # fp32 | fp16 | bf16
    note: str | None = None  # why auto chose fp32 on a GPU, or the risk of the requested precision
    warning: bool = False  # the note is a warning (an explicit risky setting), not information


def choose_precision(requested: str, model_type: str, cuda: bool, bf16: bool, training: bool = True) -> PrecisionChoice:
    """The rule of training.precision on a machine with (or without) a CUDA GPU and bf16; refusals are UserErrors."""
    if not cuda:
        if requested in ("fp16", "bf16") and training:
            raise UserError(
                f"training.precision={requested} needs a CUDA GPU and none is visible; "
                "use --set training.precision=auto (fp32 on CPU) or run on a GPU machine"
            )
        return PrecisionChoice("fp32")
    if requested == "auto":
        if bf16:
            return PrecisionChoice("bf16")
        if model_type in FP16_UNSAFE:
            return PrecisionChoice("fp32", f"precision: fp32 ({model_type} gives NaN losses in fp16 and this GPU has no bf16)")
        return PrecisionChoice("fp16")
    if requested == "bf16" and not bf16:
        raise UserError("this GPU does not support bf16; use --set training.precision=fp16 (or auto)")
    if requested == "fp16" and model_type in FP16_UNSAFE:
        return PrecisionChoice(requested, f"training.precision=fp16 with {model_type}: T5 overflows in fp16 (NaN losses); prefer auto", True)
    return PrecisionChoice(requested)


def autocast(precision: str, device: torch.device):
    """The autocast training runs in (fp16/bf16 on a GPU), so generation runs at the same precision."""
    if precision in ("fp16", "bf16") and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16 if precision == "fp16" else torch.bfloat16)
    return contextlib.nullcontext()
