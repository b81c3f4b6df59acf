"""This machine's GPU set-up as torch and nvidia-smi see it: the torch build, the driver, the GPU's memory."""

from __future__ import annotations

# The oldest NVIDIA driver each CUDA major version runs on (CUDA's minor-version compatibility).
MIN_DRIVER = {"11": "450.80.02", "12": "525.60.13", "13": "580.65.06"}


def torch_build() -> str:
    """torch's version, the CUDA it was built for, the driver that CUDA needs and its GPU architectures."""
    import torch

    cuda = torch.version.cuda
    if cuda is None:
        return f"torch {torch.__version__} (CPU-only build)"
    archs = torch._C._cuda_getArchFlags().split() if hasattr(torch._C, "_cuda_getArchFlags") else []
    kernels = f"; kernels for {' '.join(archs)}" if archs else ""
    return f"torch {torch.__version__} (CUDA {cuda}, needs NVIDIA driver ≥ {MIN_DRIVER.get(cuda.split('.')[0], '?')}{kernels})"


def nvidia_smi_gpus() -> list[tuple[str, str]]:
    """(name, driver version) of each GPU nvidia-smi sees; [] when there is no nvidia-smi or no GPU."""
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    rows = [line.rsplit(",", 1) for line in out.stdout.splitlines() if "," in line]
    return [(name.strip(), driver.strip()) for name, driver in rows]


def gpu_memory() -> int | None:
    """Bytes of memory of the first CUDA GPU; None when none is visible."""
    import torch

    return torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else None
