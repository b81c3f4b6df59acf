"""What the throughput benchmarks share: the data they time on, and a warning about machine load."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from dsum.data import read_examples
from dsum.text import Normalizer

REPO = Path(__file__).resolve().parents[1]
SHARED_DEV = REPO.parent / "shared" / "data" / "competition-ko" / "dev.csv"
SAMPLE_DEV = REPO / "data" / "sample" / "dev.csv"


def load_data(path: Path | None) -> tuple[Path, list[str], list[str]]:
    """Cleaned dialogues and first summaries of `path` (default: the real dev.csv, else the sample's)."""
    path = path or (SHARED_DEV if SHARED_DEV.exists() else SAMPLE_DEV)
    examples = read_examples(path, require_summary=True)
    normalizer = Normalizer()
    return path, [normalizer(ex.dialogue) for ex in examples], [normalizer(ex.summaries[0]) for ex in examples]


def report_load() -> None:
    """Timings on a busy 2-core machine are noisy; above load 3 the ratio is not trustworthy."""
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} cores; torch threads {torch.get_num_threads()}")
    if load > 1.0:
        print("  warning: other processes are using the CPU; timings will be noisy (both paths are timed alike)")
    if load > 3.0:
        print("  warning: at this load the ratio is not trustworthy; run when the machine is quieter")
