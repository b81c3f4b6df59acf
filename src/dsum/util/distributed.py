"""torchrun jobs: which process is the main one, and joining the process group (NCCL on GPUs, gloo on CPUs)."""

from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def init_distributed() -> None:
    """Join the torchrun job: each rank takes its own GPU before the first collective.

    NCCL binds a communicator to the current device, so set_device must come first or every rank
    lands on cuda:0.
    """
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl")
    else:
        dist.init_process_group(backend="gloo")
