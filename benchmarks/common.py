"""What the throughput benchmarks share: the data they time on, and a warning about machine load."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from dsum.data.files import read_examples
from dsum.data.text import Normalizer

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


class Loop:
    """One loop's step generator, its timing and its collected outputs."""

    def __init__(self, name: str, steps, n: int):
        self.name, self.steps, self.n = name, steps, n
        self.seconds, self.done = 0.0, 0
        self.texts: list[str] = [""] * n
        self.lengths: list[int] = [0] * n
        self.info = self.step()  # the first step (tokenizing, counting) is timed too

    def step(self):
        start = time.perf_counter()
        out = next(self.steps, None)
        self.seconds += time.perf_counter() - start
        return out

    def advance(self) -> bool:
        out = self.step()
        if out is None:
            self.done = self.n
            return False
        indices, texts = out[0], out[1]
        for pos, i in enumerate(indices):
            self.texts[i] = texts[pos]
            if len(out) > 2:
                self.lengths[i] = out[2][pos]
        self.done += len(indices)
        return True


def run_lockstep(loops: list[Loop]) -> None:
    """Step the loop with the smallest share of its dialogues done (ties: the first listed) until all finish."""
    active = list(loops)
    while active:
        loop = min(active, key=lambda lp: lp.done / lp.n)
        if not loop.advance():
            active.remove(loop)


def race(make_loops, repeats: int) -> tuple[dict[str, float], Loop, Loop]:
    """`repeats` runs of (baseline, dsum) = make_loops() in lock step, who goes first on ties alternating.

    Returns the seconds per loop name over all runs and the last run's two loops; warns when a run's
    outputs differ from the first run's.
    """
    totals: dict[str, float] = {}
    first_texts = None
    for repeat in range(1, repeats + 1):
        baseline, dsum = make_loops()
        run_lockstep([baseline, dsum] if repeat % 2 else [dsum, baseline])
        for loop in (baseline, dsum):
            totals[loop.name] = totals.get(loop.name, 0.0) + loop.seconds
        print(
            f"  run {repeat}: {baseline.name} {baseline.seconds:.1f}s, dsum {dsum.seconds:.1f}s "
            f"(ratio {baseline.seconds / dsum.seconds:.2f}; load average now {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        if first_texts is None:
            first_texts = (baseline.texts, dsum.texts)
        elif first_texts != (baseline.texts, dsum.texts):
            print("  warning: this run's outputs differ from the first run's")
    return totals, baseline, dsum
