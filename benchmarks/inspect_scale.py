"""How long `dsum inspect` takes and how large its page is: the 499 dev rows, and 12,457 rows (the size of
K-fold out-of-fold predictions over train), against the naive page that embeds every row's texts and
highlights.

Predictions are made from the references of ../shared/data/competition-ko/dev.csv with the errors the
page flags (cut, speaker tags as A/B, leftover tokens, repetition, dropped PII, English words), so the
page has flagged rows to embed; the 12,457 rows repeat dev's rows under new fnames.

    .venv/bin/python benchmarks/inspect_scale.py            # ~2-3 minutes on 2 busy cores

Ends with `ratio: <naive page bytes / our page bytes>` for 12,457 rows.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "competition-ko" / "dev.csv"
OOF_ROWS = 12_457


def perturb(summary: str, i: int) -> str:
    """One of the errors teams saw, by row number (every 8th row stays the reference)."""
    kind = i % 8
    if kind == 1:
        return summary[: max(1, len(summary) // 2)]  # cut mid-sentence
    if kind == 2:
        return summary.replace("#Person1#", "A").replace("#Person2#", "B")
    if kind == 3:
        return summary + " </s><usr>"
    if kind == 4:
        words = summary.split()
        return " ".join(words[:4] * 3) if len(words) >= 4 else summary
    if kind == 5:
        return summary.replace("#PhoneNumber#", "").replace("#Address#", "") + " 그리고 meeting을 했다."
    if kind == 6:
        return summary.split(".")[0] + "."
    return summary


def make_files(folder: Path, rows: int) -> tuple[Path, Path]:
    dev = pd.read_csv(DEV, dtype=str, keep_default_na=False)
    repeats = -(-rows // len(dev))
    frames = [dev.assign(fname=dev["fname"] + (f"_r{k}" if k else "")) for k in range(repeats)]
    pool = pd.concat(frames, ignore_index=True).iloc[:rows]
    preds = pd.DataFrame({"fname": pool["fname"], "summary": [perturb(s, i) for i, s in enumerate(pool["summary"])]})
    dev_path, pred_path = folder / f"dev_{rows}.csv", folder / f"pred_{rows}.csv"
    pool.to_csv(dev_path, index=False)
    preds.to_csv(pred_path, index=False)
    return pred_path, dev_path


def build(pred: Path, dev: Path, out: Path) -> tuple[float, int, int]:
    from dsum.report.inspect_build import build_inspect

    started = time.perf_counter()
    files = build_inspect(pred, dev=dev, out=out)
    return time.perf_counter() - started, files.html.stat().st_size, len(files.data["details"])


def browser_ms(page: Path) -> str:
    """Milliseconds from navigation start to the drawn table in headless chromium ("-" without chromium)."""
    import re
    import shutil
    import subprocess

    chromium = shutil.which("chromium")
    if chromium is None:
        return "-"
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=300).stdout
    found = re.search(r'data-ready-ms="(\d+)"', dom)
    return found.group(1) if found else "?"


def main() -> None:
    if not DEV.is_file():
        sys.exit(f"{DEV} is absent: this benchmark needs ../shared")
    import dsum.report.inspect_data as data

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pred, dev = make_files(folder, 499)
        seconds, size, detailed = build(pred, dev, folder / "dev.html")
        print(f"499 rows: {seconds:.1f} s, page {size / 1e6:.2f} MB, {detailed} rows with texts")
        pred, dev = make_files(folder, OOF_ROWS)
        seconds, size, detailed = build(pred, dev, folder / "oof.html")
        print(f"{OOF_ROWS:,} rows: {seconds:.1f} s, page {size / 1e6:.2f} MB, {detailed:,} rows with texts (ours); "
              f"table drawn {browser_ms(folder / 'oof.html')} ms after navigation in chromium")
        data.DETAIL_ALL = 10**9  # the naive page: every row's dialogue, references and highlights
        naive_seconds, naive_size, naive_detailed = build(pred, dev, folder / "oof_naive.html")
        print(f"{OOF_ROWS:,} rows: {naive_seconds:.1f} s, page {naive_size / 1e6:.2f} MB, {naive_detailed:,} rows with texts (naive); "
              f"table drawn {browser_ms(folder / 'oof_naive.html')} ms after navigation in chromium")
    print(f"ratio: {naive_size / size:.2f}")


if __name__ == "__main__":
    main()
