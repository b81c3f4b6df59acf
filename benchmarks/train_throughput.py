"""Training throughput: the organiser baseline's batching against dsum's, on the same tiny model.

Run from anywhere: .venv/bin/python benchmarks/train_throughput.py [--samples N] [--batch-size B]

Both paths train the same tiny BART (model.tiny in configs/demo.yaml, its fixed initial weights,
one fresh copy per path) on the same N examples (a seeded random subset of the real dev.csv when
../shared/data/competition-ko/ holds it, else of data/sample/dev.csv) with the same plain torch
loop: AdamW (learning rate and weight decay from the config), batch size B, one pass over the N
samples after a few untimed warm-up steps. Only the batching differs:

  * organiser: the whole split tokenized up front with padding="max_length" (512 source tokens,
    100 label tokens), pad ids left in the labels (so pads count in the loss), random order
    (torch RandomSampler). On the real data the longest dialogue is over 512 tokens, so this is
    also what the organiser's padding=True (pad to the split's longest, truncate to 512) gives.
  * dsum: unpadded features from dsum.train.tokenize_examples, batches in the order transformers'
    LengthGroupedSampler gives (what train_sampling_strategy="group_by_length" uses; mega-batches
    of 50 batches, as the Trainer uses on the full train.csv) and padded per batch by
    DataCollatorForSeq2Seq (label_pad_token_id=-100, decoder inputs built from the labels).

The two paths run interleaved, batch by batch, and each step is timed on its own: on a shared
machine both paths then see the same background load. A step's time includes building its batch
(the collator's padding for dsum); the organiser's up-front tokenization is not timed. Printed
per path: samples/s, seconds, and real vs fed tokens (attention-mask sum / non-pad labels
against the numel of the batches). The last line is `ratio: <dsum / organiser samples/s>`.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

from dsum.config import load_config
from dsum.data import read_examples
from dsum.modeling import load_model_and_tokenizer
from dsum.text import Normalizer, special_tokens_for
from dsum.train import tokenize_examples

REPO = Path(__file__).resolve().parents[1]
SHARED_DEV = REPO.parent / "shared" / "data" / "competition-ko" / "dev.csv"
SAMPLE_DEV = REPO / "data" / "sample" / "dev.csv"
CONFIG = REPO / "configs" / "demo.yaml"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=0, help="a seeded random subset of N samples (default 0: all)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed steps before timing (per path)")
    parser.add_argument(
        "--mega-batch-mult",
        type=int,
        default=50,
        help="length groups of this many batches; 50 is what the Trainer's LengthGroupedSampler uses on "
        "any training set of at least 200 batches (train.csv: 12,457 rows); on a small subset its own "
        "default would be len // (4 * batch), far coarser than in real training",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--data", type=Path, default=None, help="a CSV with summaries (default: real dev, else sample dev)")
    return parser.parse_args()


def load_data(path: Path | None) -> tuple[Path, list[str], list[str]]:
    path = path or (SHARED_DEV if SHARED_DEV.exists() else SAMPLE_DEV)
    examples = read_examples(path, require_summary=True)
    normalizer = Normalizer()
    sources = [normalizer(ex.dialogue) for ex in examples]
    targets = [normalizer(ex.summaries[0]) for ex in examples]
    return path, sources, targets


def organiser_batches(tokenizer, sources, targets, max_source, max_target, batch_size, seed):
    """The whole split padded to 512/100 up front; pad ids stay in the labels; random order."""
    enc = tokenizer(sources, padding="max_length", truncation=True, max_length=max_source, return_tensors="pt")
    labels = tokenizer(
        text_target=targets, padding="max_length", truncation=True, max_length=max_target, return_tensors="pt"
    )["input_ids"]
    rows = [
        {"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": labels[i]}
        for i in range(len(sources))
    ]
    sampler = RandomSampler(rows, generator=torch.Generator().manual_seed(seed))
    # default_collate stacks the pre-padded tensors, as a DataLoader over a torch Dataset would
    return DataLoader(rows, batch_size=batch_size, sampler=sampler)


def dsum_batches(tokenizer, model, sources, targets, max_source, max_target, batch_size, seed, mega_batch_mult):
    """Unpadded rows, length-grouped order, padded per batch (labels padded with -100)."""
    from transformers import DataCollatorForSeq2Seq
    from transformers.trainer_pt_utils import get_length_grouped_indices

    rows = tokenize_examples(tokenizer, sources, targets, max_source, max_target).rows
    # The indices LengthGroupedSampler yields, with the Trainer's mega-batch size for the real
    # training set (see --mega-batch-mult).
    order = get_length_grouped_indices(
        [len(r["input_ids"]) for r in rows],
        batch_size,
        mega_batch_mult=mega_batch_mult,
        generator=torch.Generator().manual_seed(seed),
    )
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    return DataLoader(rows, batch_size=batch_size, sampler=order, collate_fn=collator)


class TrainPath:
    """One model + AdamW + loader; `step` trains on one batch and adds its wall time and token counts."""

    def __init__(self, name, model, loader, lr, weight_decay, pad_id):
        self.name, self.model, self.loader, self.pad_id = name, model, loader, pad_id
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        self.samples, self.seconds, self.last_loss = 0, 0.0, float("nan")
        self.src_real = self.src_total = self.tgt_real = self.tgt_total = 0
        model.train()

    def step(self, batch, start: float | None = None) -> None:
        """One training step; with `start` (when the batch was requested), time and count it."""
        loss = self.model(**batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.last_loss = loss.item()
        if start is None:
            return
        self.seconds += time.perf_counter() - start
        self.samples += batch["input_ids"].shape[0]
        self.src_real += int(batch["attention_mask"].sum())
        self.src_total += batch["input_ids"].numel()
        labels = batch["labels"]
        self.tgt_real += int(((labels != -100) & (labels != self.pad_id)).sum())
        self.tgt_total += labels.numel()


def run_interleaved(paths: list[TrainPath], warmup_steps: int) -> None:
    """Warm up each path, then one timed pass, alternating the paths batch by batch.

    The machine is shared: interleaving exposes both paths to the same background load, and
    alternating which goes first removes any order effect.
    """
    for path in paths:
        for i, batch in enumerate(path.loader):
            if i >= warmup_steps:
                break
            path.step(batch)
    n_batches = len(paths[0].loader)
    iterators = [iter(path.loader) for path in paths]
    for i in range(1, n_batches + 1):
        order = list(zip(paths, iterators))
        for path, batches in order if i % 2 else reversed(order):
            start = time.perf_counter()  # the batch's collation counts too
            path.step(next(batches), start)
        if i % 5 == 0 or i == n_batches:
            done = ", ".join(f"{p.name} {p.seconds:.1f}s" for p in paths)
            print(f"  batch {i}/{n_batches}: {done}", flush=True)


def report(path: TrainPath) -> float:
    rate = path.samples / path.seconds
    print(f"{path.name}: {path.samples} samples in {path.seconds:.2f} s = {rate:.2f} samples/s")
    for part, real, total in (("source", path.src_real, path.src_total), ("labels", path.tgt_real, path.tgt_total)):
        print(f"  {part} tokens: {real} real / {total} fed ({real / total:.1%} real, {total - real} padding)")
    return rate


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(CONFIG)
    seed = cfg.general.seed
    path, sources, targets = load_data(args.data)
    print(f"data: {path} ({len(sources)} examples)")
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} cores; torch threads {torch.get_num_threads()}")
    if load > 1.0:
        print("  warning: other processes are using the CPU; timings will be noisy (the paths are interleaved)")

    special = special_tokens_for(sources + targets)
    print("building the tiny model and training its tokenizer ...", flush=True)
    base_model, tokenizer = load_model_and_tokenizer(cfg.model, special, train_texts=sources + targets)
    # A seeded random subset, so a small --samples still has the split's length distribution.
    n = min(args.samples, len(sources)) if args.samples else len(sources)
    keep = sorted(torch.randperm(len(sources), generator=torch.Generator().manual_seed(seed))[:n].tolist())
    sources, targets = [sources[i] for i in keep], [targets[i] for i in keep]
    m, t = cfg.model, cfg.training
    print(
        f"model: tiny BART {sum(p.numel() for p in base_model.parameters()) / 1e6:.2f}M parameters; "
        f"{n} samples, batch {args.batch_size}, {torch.get_num_threads()} threads, AdamW lr {t.learning_rate}; "
        f"length groups of {args.mega_batch_mult * args.batch_size} samples"
    )

    organiser_model, dsum_model = copy.deepcopy(base_model), copy.deepcopy(base_model)  # same start
    lengths = (m.max_source_length, m.max_target_length)
    paths = [
        TrainPath(
            "organiser",
            organiser_model,
            organiser_batches(tokenizer, sources, targets, *lengths, args.batch_size, seed),
            t.learning_rate,
            t.weight_decay,
            tokenizer.pad_token_id,
        ),
        TrainPath(
            "dsum",
            dsum_model,
            dsum_batches(tokenizer, dsum_model, sources, targets, *lengths, args.batch_size, seed, args.mega_batch_mult),
            t.learning_rate,
            t.weight_decay,
            tokenizer.pad_token_id,
        ),
    ]
    torch.manual_seed(seed)
    print(f"timing {len(paths[0].loader)} batches per path (interleaved) after {args.warmup_steps} warm-up steps each")
    run_interleaved(paths, args.warmup_steps)

    print()
    organiser_rate, dsum_rate = (report(p) for p in paths)
    print(
        "note: the organiser's loss also counts its padded label positions, so the losses are not "
        f"comparable (last batch: organiser {paths[0].last_loss:.3f}, dsum {paths[1].last_loss:.3f})"
    )
    print(f"ratio: {dsum_rate / organiser_rate:.2f}")


if __name__ == "__main__":
    main()
