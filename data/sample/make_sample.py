"""Rebuilds this folder's slice of the competition data (see NOTICE.md for its licence).

Takes the first 120 rows of the official dev.csv, in file order, and splits them 80/20/20 into
train.csv, dev.csv and test.csv (test: fname, dialogue only), renaming the ids train_N, dev_N and
test_N. sample_submission.csv mirrors the official one: header ",fname,summary", summary
"요약문입니다.". Files are written as pandas writes them (UTF-8 without BOM, "\n" line ends), which
reproduces the official files byte for byte.

    python data/sample/make_sample.py [path/to/official/dev.csv]
"""

import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[2] / "shared" / "data" / "competition-ko" / "dev.csv"
SPLITS = (("train", 80), ("dev", 20), ("test", 20))


def write(table: pd.DataFrame, name: str, index: bool = False) -> None:
    table.to_csv(HERE / name, index=index, lineterminator="\n", encoding="utf-8")


def main(source: Path) -> None:
    rows = pd.read_csv(source, dtype=str, keep_default_na=False)
    start = 0
    for split, size in SPLITS:
        part = rows.iloc[start : start + size].copy()
        start += size
        part["fname"] = [f"{split}_{i}" for i in range(size)]
        if split == "test":
            write(part[["fname", "dialogue"]], "test.csv")
            submission = pd.DataFrame({"fname": part["fname"], "summary": "요약문입니다."})
            write(submission.reset_index(drop=True), "sample_submission.csv", index=True)
        else:
            write(part, f"{split}.csv")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE)
