"""Generation engines: `dsum predict`'s path with generation.engine=hf against generation.engine=ctranslate2.

Run from anywhere: .venv/bin/python benchmarks/engine_throughput.py [--kobart N] [--smollm2 N] [--int8]

Both engines run the same verb function (dsum.verbs.predict.predict_split on the dev split, which
frames, batches by length and decodes alike; only the decoding loop differs), in one process, each
case timed once per engine on the same model object:

  * KoBART at its real size: digit82/kobart-summarization's config.json and tokenizer from
    ../shared/models (random weight matrices drawn at std 0.1, seeded: at the config's own init of 0.02
    every answer is an immediate eos, which dsum would generate again), the organiser's decoding
    (4 beams, no_repeat_ngram_size 2, early stopping), 60 new tokens, --kobart Korean dev dialogues
    (../shared/data/competition-ko/dev.csv, else the bundled sample). fp32 on both sides.
  * SmolLM2-135M-Instruct, the real weights (../shared/models, the .gguf dequantized once to a float32
    folder), greedy, 80 new tokens, --smollm2 English DialogSum dev dialogues with its chat template.
    Skipped when ../shared lacks the file.

Printed per case: seconds and dialogues/s of each engine, the conversion's seconds (once per checkpoint,
cached afterwards: not in the engine's time), how many summaries are identical, the board score of each.
--int8 adds CTranslate2 int8 (compute_type) with its score next to fp32's. The random KoBART's beams make
near-ties that the two beam searches settle differently (and ct2 renormalises after the n-gram ban,
generate() does not): its identical count is low by construction; greedy on real weights is the check.

Sized for a shared 2-core machine (HF at real size is slow: 64 dialogues × 4 beams took 400 s): the
defaults finish in a few minutes. The last line is `ratio: <KoBART 4 beams fp32, ctranslate2 dialogues/s
over hf>`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
SHARED = REPO.parent / "shared"
KOBART = SHARED / "models" / "digit82__kobart-summarization"
GGUF = SHARED / "models" / "HuggingFaceTB__SmolLM2-135M-Instruct-Q4_1" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DIALOGSUM = SHARED / "data" / "dialogsum-en"


def timed_predict(cfg, model, tokenizer, examples, engine: str, compute_type: str = "auto") -> dict:
    """predict_split on dev with this engine; adds seconds, the conversion's seconds and the summaries."""
    import pandas as pd

    from dsum.data.text import normalizer_from_config
    from dsum.model.engine_ct2 import engine_for
    from dsum.model.precision import resolve_precision
    from dsum.verbs.predict import predict_split

    gen = cfg.generation.model_copy(update={"engine": engine, "compute_type": compute_type})
    cfg = cfg.model_copy(update={"generation": gen})
    convert = 0.0
    if engine == "ctranslate2":  # the conversion, once per checkpoint (kept in the cache), timed apart
        start = time.perf_counter()
        engine_for(model, tokenizer, gen, resolve_precision(cfg.training.precision, model.config.model_type, training=False))
        convert = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "dev.csv"
        start = time.perf_counter()
        result = predict_split(cfg, model, tokenizer, "dev", out, normalizer_from_config(cfg.data), examples, progress=False)
        result["seconds"] = time.perf_counter() - start
        result["summaries"] = pd.read_csv(out, keep_default_na=False)["prediction"].tolist()
    result["convert"] = convert
    return result


def compare(name: str, cfg, model, tokenizer, examples, int8: bool) -> float:
    """Both engines (and int8 when asked) on one case; returns ct2's dialogues/s over hf's."""
    n = len(examples)
    hf = timed_predict(cfg, model, tokenizer, examples, "hf")
    ct2 = timed_predict(cfg, model, tokenizer, examples, "ctranslate2", "float32")
    same = sum(a == b for a, b in zip(hf["summaries"], ct2["summaries"]))
    print(f"{name}: {n} dialogues")
    for label, r in (("hf generate()", hf), ("ctranslate2 fp32", ct2)):
        print(f"  {label:17s} {r['seconds']:7.1f} s  {n / r['seconds']:6.2f} dialogues/s  board score {r['score']:.2f}"
              + (f"  (conversion {r['convert']:.1f} s, once)" if r["convert"] else ""))
    print(f"  identical summaries: {same}/{n}")
    if int8:
        q = timed_predict(cfg, model, tokenizer, examples, "ctranslate2", "int8")
        same8 = sum(a == b for a, b in zip(ct2["summaries"], q["summaries"]))
        print(f"  ctranslate2 int8  {q['seconds']:7.1f} s  {n / q['seconds']:6.2f} dialogues/s  board score {q['score']:.2f}"
              f"  ({q['score'] - ct2['score']:+.2f} vs fp32; {same8}/{n} identical to fp32)")
    return hf["seconds"] / ct2["seconds"]


def kobart_case(n: int, int8: bool) -> float:
    import torch
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    from common import SAMPLE_DEV, SHARED_DEV
    from dsum.config import load_config
    from dsum.data.files import read_examples
    from dsum.model.tokenization import framing_for, load_tokenizer

    dev = SHARED_DEV if SHARED_DEV.exists() else SAMPLE_DEV
    cfg = load_config(None, {
        "data.dev": str(dev), "model.max_source_length": 512, "training.eval_batch_size": 16, "training.precision": "fp32",
        "generation.num_beams": 4, "generation.no_repeat_ngram_size": 2, "generation.max_new_tokens": 60,
    })
    examples = read_examples(dev, require_summary=True)[:n]
    tokenizer = load_tokenizer(KOBART)
    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_config(AutoConfig.from_pretrained(KOBART)).eval()
    with torch.no_grad():  # at the config's init (std 0.02) every answer is an immediate eos: redrawn at std 0.1
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0, 0.1)
    framing_for(model.config, tokenizer, None).apply_to(model)
    return compare("KoBART size (random weights), 4 beams", cfg, model, tokenizer, examples, int8)


def smollm2_case(n: int, int8: bool) -> None:
    from dsum.config import load_config
    from dsum.data.files import read_examples
    from dsum.model.loading import load_pretrained
    from dsum.model.tokenization import framing_for

    with tempfile.TemporaryDirectory() as scratch:
        rows = [json.loads(line) for line in (DIALOGSUM / "dialogsum.dev.jsonl").read_text(encoding="utf-8").splitlines()][:n]
        dev = Path(scratch) / "dev.jsonl"
        dev.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        cfg = load_config(None, {
            "data.dev": str(dev), "data.language": "en", "model.name": str(GGUF), "model.max_source_length": 512,
            "prompt.system": "Summarize the dialogue in one sentence.", "prompt.user": "{dialogue}",
            "training.eval_batch_size": 16, "training.precision": "fp32", "metric.tokenizer": "whitespace",
            "generation.num_beams": 1, "generation.no_repeat_ngram_size": 0, "generation.repetition_penalty": 1.0,
            "generation.max_new_tokens": 80,
        })
        examples = read_examples(dev, require_summary=True)
        model, tokenizer = load_pretrained(GGUF)
        framing_for(model.config, tokenizer, cfg.prompt).apply_to(model)
        compare("SmolLM2-135M-Instruct (real weights), greedy", cfg, model.eval(), tokenizer, examples, int8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kobart", type=int, default=16, help="Korean dev dialogues for the KoBART case")
    parser.add_argument("--smollm2", type=int, default=16, help="English dev dialogues for SmolLM2 (0: skip)")
    parser.add_argument("--int8", action="store_true", help="also CTranslate2 int8, with its score next to fp32's")
    args = parser.parse_args()
    if not KOBART.is_dir():
        sys.exit(f"{KOBART} is absent: the KoBART case needs its config and tokenizer")
    os.environ.setdefault("DSUM_CACHE", tempfile.mkdtemp(prefix="dsum-bench-cache-"))  # conversions go here, not ~/.cache
    from common import report_load

    report_load()
    ratio = kobart_case(args.kobart, args.int8)
    if args.smollm2 and GGUF.is_file() and DIALOGSUM.is_dir():
        smollm2_case(args.smollm2, args.int8)
    elif args.smollm2:
        print(f"SmolLM2 skipped: {GGUF} or {DIALOGSUM} is absent")
    report_load()
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
