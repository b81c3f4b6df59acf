"""Time dsum's leaderboard ROUGE against the naive recipe (pltrdy `rouge` in a Python loop).

Run from anywhere: python benchmarks/score_speed.py

Builds 499 predictions (dev summaries with every 7th word dropped) with 3 references each (the
summary, the summary with its sentences in reverse order, and the next row's summary), then
times, with the Mecab tokenizer:
  * start-up: creating the tokenizer (first get_tokenizer call);
  * dsum: score_texts on all rows;
  * naive (if `rouge` is importable): tokenise every pair with Mecab, Rouge().get_scores on the
    space-joined morphemes, average over references and rows in Python.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from dsum.metric.rouge import get_tokenizer, score_texts

REPO = Path(__file__).resolve().parents[1]
SHARED_DEV = REPO.parent / "shared" / "data" / "competition-ko" / "dev.csv"
SAMPLE_DEV = REPO / "data" / "sample" / "dev.csv"
TARGET_S = 2.0


def load_summaries() -> tuple[Path, list[tuple[str, str]]]:
    path = SHARED_DEV if SHARED_DEV.exists() else SAMPLE_DEV
    if not path.exists():
        raise SystemExit(f"no data: neither {SHARED_DEV} nor {SAMPLE_DEV} exists")
    with path.open(encoding="utf-8") as f:
        return path, [(row["fname"], row["summary"]) for row in csv.DictReader(f)]


def build(rows: list[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    predictions, references = {}, {}
    for i, (fname, summary) in enumerate(rows):
        words = summary.split()
        predictions[fname] = " ".join(w for k, w in enumerate(words) if k % 7 != 6)
        reversed_sentences = ". ".join(s.strip() for s in reversed(summary.split(".")) if s.strip())
        references[fname] = [summary, reversed_sentences, rows[(i + 1) % len(rows)][1]]
    return predictions, references


def naive(predictions: dict[str, str], references: dict[str, list[str]]) -> float:
    """The usual recipe: per pair, Mecab both texts and call the package; mean over refs/rows."""
    from rouge import Rouge

    rouge = Rouge()
    morphs = get_tokenizer("mecab")
    totals = [0.0, 0.0, 0.0]
    for fname, refs in references.items():
        hyp = " ".join(morphs(predictions[fname]))
        for ref in refs:
            s = rouge.get_scores(hyp, " ".join(morphs(ref)))[0]
            for k, m in enumerate(("rouge-1", "rouge-2", "rouge-l")):
                totals[k] += s[m]["f"] / len(refs)
    return sum(totals) / len(references) / 3 * 100


def main() -> None:
    path, rows = load_summaries()
    predictions, references = build(rows)
    print(f"data: {path} ({len(predictions)} predictions x 3 references)")

    t0 = time.perf_counter()
    get_tokenizer("mecab")
    startup = time.perf_counter() - t0
    print(f"start-up (mecab tokenizer): {startup:.4f} s")

    t0 = time.perf_counter()
    result = score_texts(predictions, references, tokenizer="mecab")
    dsum_s = time.perf_counter() - t0
    print(f"dsum score_texts: {dsum_s:.4f} s  (score {result.score:.4f})")
    print(f"dsum under {TARGET_S:.0f} s: {'yes' if dsum_s < TARGET_S else 'NO'}")

    try:
        import rouge  # noqa: F401
    except ImportError:
        print("naive recipe: skipped (`rouge` not installed)")
        return
    t0 = time.perf_counter()
    naive_score = naive(predictions, references)
    naive_s = time.perf_counter() - t0
    print(f"naive rouge loop: {naive_s:.4f} s  (score {naive_score:.4f}, "
          f"difference {abs(naive_score - result.score):.2e})")
    print(f"ratio: {naive_s / dsum_s:.2f}")


if __name__ == "__main__":
    main()
