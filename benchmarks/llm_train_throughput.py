"""Decoder-only LoRA training throughput: dsum's step (packing + label-only logits) against the padded full-logits step.

Run from anywhere: .venv/bin/python benchmarks/llm_train_throughput.py [--rows N] [--threads T] [--shapes qwen3,solar]

Both steps train the same model on the same examples: a seeded random subset of --rows (default 16) of the real
dev.csv when ../shared/data/competition-ko/ holds it (else data/sample/dev.csv), cleaned with
dsum.data.text.Normalizer and framed as `dsum train` frames them: the real tokenizer and chat template of the
recipe's model (tests/models: Qwen3-4B for configs/qwen3-lora.yaml, SOLAR-10.7B-Instruct for
configs/solar-qlora.yaml), the recipe's prompt, dialogues cut to model.max_source_length (1024) and summaries
to max_target_length (160) (dsum.model.loading.load_model_and_tokenizer, dsum.model.tokenization.framing_for).
The models are real-shaped stand-ins (tests/standins.py: the real config and vocabulary — Qwen3 151,936 entries
with a tied head, SOLAR 32,000 untied — random weights) made wider than the test ones (--hidden, default 256,
2 layers, MLP 3×) with LoRA r 16 on every linear layer, fp32, AdamW on the adapters.

  * padded (the TRL/teams recipe): batches of B examples in the data's order, padded on the right to the
    batch's longest, attention mask, `model(**batch).loss` — transformers' ForCausalLMLoss over logits for
    every position (batch × length × vocabulary, upcast, log-softmaxed).
  * dsum: the examples packed into rows of at most 1024 + 160 tokens (dsum.model.packing.pack_rows,
    best fit decreasing), B rows a step (PackedCollator: positions restarting per example, no attention
    mask, cache off), loss by dsum.model.label_loss.label_only_loss: the output layer only at label positions.

A step is forward, backward and AdamW's update. Each variant runs in its own process (its peak resident memory
is its own: ru_maxrss) after one untimed warm-up step; `peak` is the process's peak resident set, `step` what
training added over the peak of loading the model and framing the data. Throughput is label tokens (summary
tokens + end of turn, the tokens the loss is over) per second; the same label tokens in both variants.

What the ratio measures: at this width the output layer is most of the work (Qwen3 shape: 2·256·151,936 FLOPs a
position in the head against ~3 M in the two layers), as on the ~90%-prompt rows of the real recipes it is most
of the memory. On the real Qwen3-4B the head is ~10% of a position's FLOPs (36 layers of width 2,560) and on
SOLAR ~1%: there label-only logits save mostly memory (Qwen3-4B, batch 4 × 1,184: ~5.8 GB of fp32 logits and as
much again for their gradient), and the time saved is the padding packing removes plus that ~10%.
Ends with `ratio: <dsum / padded label tokens per second>` for the Qwen3 shape at batch 4.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, load_data, report_load  # noqa: E402

RECIPES = {"qwen3": ("configs/qwen3-lora.yaml", "Qwen__Qwen3-4B"), "solar": ("configs/solar-qlora.yaml", "upstage__SOLAR-10.7B-Instruct-v1.0")}
GIB = 1024**3


def peak_rss() -> int:
    """This process's peak resident set in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def build_model_folder(shape: str, hidden: int, out: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from standins import MODELS, build_causal_standin

    return build_causal_standin(MODELS / RECIPES[shape][1], out, hidden=hidden, layers=2, intermediate=3 * hidden,
                                heads=4, kv_heads=2)


def framed_rows(shape: str, folder: Path, rows: int, seed: int):
    """(model, tokenizer, training rows, config) as dsum train prepares them, for a seeded subset of the dev data."""
    import torch
    from dsum.config import load_config
    from dsum.model.loading import load_model_and_tokenizer, wrap_lora
    from dsum.model.tokenization import framing_for

    cfg = load_config(REPO / RECIPES[shape][0], [f"model.name={folder}", "lora.quantization=none"])
    path, dialogues, summaries = load_data(None)
    chosen = sorted(random.Random(seed).sample(range(len(dialogues)), min(rows, len(dialogues))))
    sources, targets = [dialogues[i] for i in chosen], [summaries[i] for i in chosen]
    model, tokenizer = load_model_and_tokenizer(cfg.model, [], sources + targets, "none", cfg.prompt)
    model = wrap_lora(model, cfg.lora, None).to(torch.float32)
    framing = framing_for(model.config, tokenizer, cfg.prompt)
    features = framing.encode_examples(sources, targets, cfg.model.max_source_length, cfg.model.max_target_length)
    return model, tokenizer, features.rows, cfg, path


def padded_batches(rows: list[dict], batch: int, pad_id: int):
    import torch

    for start in range(0, len(rows), batch):
        group = rows[start : start + batch]
        width = max(len(r["input_ids"]) for r in group)
        yield {
            "input_ids": torch.tensor([r["input_ids"] + [pad_id] * (width - len(r["input_ids"])) for r in group]),
            "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in group]),
            "labels": torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in group]),
        }


def worker(args) -> None:
    """One variant in this process: warm-up step, timed steps over all rows; one JSON line on stdout."""
    import torch
    from dsum.model.label_loss import label_only_loss
    from dsum.model.packing import PackedCollator, pack_rows

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, tokenizer, rows, cfg, _ = framed_rows(args.shape, Path(args.folder), args.rows, args.seed)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    if args.variant == "dsum":
        packed = pack_rows(rows, cfg.model.max_source_length + cfg.model.max_target_length)
        collate = PackedCollator(tokenizer.pad_token_id)
        batches = [collate(packed[i : i + args.batch]) for i in range(0, len(packed), args.batch)]

        def loss_of(b):
            return label_only_loss(model, b)
    else:
        batches = list(padded_batches(rows, args.batch, tokenizer.pad_token_id))

        def loss_of(b):
            return model(**b).loss

    def step(b) -> float:
        loss = loss_of(b)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    loaded = peak_rss()
    step(batches[0])  # warm-up (allocations, first-call costs): not timed
    start = time.perf_counter()
    for b in batches:
        step(b)
    seconds = time.perf_counter() - start
    labels = sum(int(b["labels"][:, 1:].ne(-100).sum()) for b in batches)
    positions = sum(b["input_ids"].numel() for b in batches)
    print(json.dumps({"seconds": seconds, "label_tokens": labels, "positions": positions, "steps": len(batches),
                      "peak": peak_rss(), "loaded": loaded, "tokens": sum(len(r["input_ids"]) for r in rows)}))


def run_variant(args, shape: str, folder: Path, variant: str, batch: int) -> dict:
    command = [sys.executable, __file__, "--worker", "--shape", shape, "--folder", str(folder), "--variant", variant,
               "--batch", str(batch), "--rows", str(args.rows), "--seed", str(args.seed), "--threads", str(args.threads)]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if result.returncode != 0:
        sys.exit(f"{shape} {variant} batch {batch} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=16, help="dev dialogues trained on per variant")
    parser.add_argument("--batch-sizes", default="1,4")
    parser.add_argument("--shapes", default="qwen3,solar")
    parser.add_argument("--hidden", type=int, default=256, help="stand-in width (2 layers, MLP 3×)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (1: fair on a shared machine)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    report_load()
    ratios: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes.split(","):
            folder = build_model_folder(shape, args.hidden, Path(tmp) / shape)
            model, _, rows, cfg, path = framed_rows(shape, folder, args.rows, args.seed)
            vocab = model.config.vocab_size
            del model
            lengths = sorted(len(r["input_ids"]) for r in rows)
            labels = sum(sum(1 for x in r["labels"] if x != -100) for r in rows)
            print(f"{shape}: {len(rows)} dialogues of {path.relative_to(REPO.parent) if path.is_relative_to(REPO.parent) else path}, "
                  f"{RECIPES[shape][0]}'s prompt: {sum(lengths)} tokens (median {lengths[len(lengths) // 2]}, "
                  f"longest {lengths[-1]}), {labels} label tokens ({labels / sum(lengths):.0%}); "
                  f"stand-in width {args.hidden}, 2 layers, vocabulary {vocab:,}")
            for batch in (int(b) for b in args.batch_sizes.split(",")):
                results = {variant: run_variant(args, shape, folder, variant, batch) for variant in ("padded", "dsum")}
                for variant, r in results.items():
                    print(f"  batch {batch} {variant:<6}: {r['steps']:3d} steps, {r['positions']:6d} positions, "
                          f"{r['seconds']:7.2f} s, {r['label_tokens'] / r['seconds']:8.1f} label tokens/s, "
                          f"peak {r['peak'] / GIB:5.2f} GiB (step {(r['peak'] - r['loaded']) / GIB:5.2f} GiB over loading)",
                          flush=True)
                padded, dsum = results["padded"], results["dsum"]
                assert padded["label_tokens"] == dsum["label_tokens"], (padded["label_tokens"], dsum["label_tokens"])
                ratios[(shape, batch)] = padded["seconds"] / dsum["seconds"]
                print(f"  batch {batch}: dsum {ratios[(shape, batch)]:.2f}× the label tokens/s; peak "
                      f"{dsum['peak'] / GIB:.2f} vs {padded['peak'] / GIB:.2f} GiB")
    print(f"load average now {os.getloadavg()[0]:.1f}")
    key = ("qwen3", 4) if ("qwen3", 4) in ratios else next(iter(ratios))
    print(f"ratio: {ratios[key]:.2f}")


if __name__ == "__main__":
    main()
