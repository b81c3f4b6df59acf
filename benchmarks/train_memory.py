"""Peak resident memory of a real `dsum train` run, phase by phase, against `dsum doctor`'s estimate.

Run from the repository root (one process per measurement: its peaks are its own):

    uv run --frozen python benchmarks/train_memory.py [--gc] [--train 16] [--dev 8] [--eval-batch 8] ...

The run is dsum.train itself on SmolLM2-135M-Instruct (../shared/models, GGUF Q4_1, converted once to a float32
folder by dsum.model.gguf) with LoRA r16 on every linear layer, on the first --train / --dev / --test dialogues of
English DialogSum (../shared/data/dialogsum-en), fp32 on the CPU. Everything else is the config's defaults unless
given: max_source_length 512, max_target_length 100, eval_batch_size 32, 4 beams, 160 new tokens (a decoder-only
model's default), generation.batch_by_tokens, dsum's default (Korean) prompt, one epoch, evaluation at its end.

A thread samples the process's resident set (/proc/self/statm) every 2 ms and keeps the peak of each phase:

    load model          dsum.model.loading.load_model_and_tokenizer (the converted fp32 folder)
    lora + data         adapters, encoding, the Trainer's set-up, up to the first step
    train fwd/bwd #1    the first optimizer step's forward and backward passes (all accumulation steps)
    train optimizer #1  its AdamW step (the moments are allocated here)
    train fwd/bwd       the later steps' forward and backward passes; train optimizer: their updates
    eval generate …     DevEvaluation: one line per generate() call (rows × beams, prompt + new tokens)
    save / reload       checkpoints, load_best_model_at_end, checkpoint-best
    predict dev/test …  finish_run's predictions, one line per generate() call

Each line shows the resident set when the phase began, its peak, when it ended and, with --trim, after glibc's
malloc_trim(0) at its end (freed memory the allocator kept). Generate lines also show the KV cache the call builds
at its end: rows × beams × (prompt + new tokens) × layers × 2 × kv heads × head dim × 4 bytes (fp32).
--force-length sets min_new_tokens = max_new_tokens so every call runs to the limit (the worst case, repeatable).
At the end: ru_maxrss (the kernel's peak) and doctor's estimate (dsum.verbs.doctor.training_estimate) for the same
config, with precision auto (as doctor reads it from a config that leaves it unset) and fp32 (what the CPU runs),
then the same with dev evaluation's generation counted (dsum.model.memory.generation_bytes). With --layers the
estimates are still the full model's.

Measured here (2 CPU cores shared with other jobs; fp32; batch 4 rows of 453-592 tokens, default prompt):

    training step, batch 4           default glibc    MALLOC_MMAP_THRESHOLD_=65536   malloc's live bytes
    gradient checkpointing off       10.81 GB         6.47 GB                        5.22 GB
    gradient checkpointing on         7.34 GB         1.85 GB                        0.60 GB

malloc_trim(0) after either step brings the resident set back to 1.53 GB: with the default (dynamic) mmap
threshold, glibc keeps the checkpointed step's freed recomputation buffers in its heap (MALLOC_ARENA_MAX=2: 7.04 GB,
no help). Dev evaluation's generate(), 32 dialogues × 4 beams, 512 + 160 tokens (forced), first 2 layers: malloc's
live bytes +2.48 GB (KV cache 0.26 GB of it); 30 layers, 2 dialogues × 4 beams, 419 + 160: +0.27 GB (cache 0.21 GB).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GGUF = SHARED / "models" / "HuggingFaceTB__SmolLM2-135M-Instruct-Q4_1" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DIALOGSUM = SHARED / "data" / "dialogsum-en"
PAGE = os.sysconf("SC_PAGE_SIZE")
GB = 1e9


def rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


LIBC = ctypes.CDLL("libc.so.6")
LIBC.mallinfo2.restype = Mallinfo2


def live() -> int:
    """Bytes glibc's malloc has handed out and not had back: in use in its arenas plus mmapped chunks."""
    info = LIBC.mallinfo2()
    return info.uordblks + info.hblkhd


class Meter:
    """The current phase's name and every phase's resident bytes (start, peak, end, after trim) and peak live bytes."""

    def __init__(self, trim: bool, interval: float = 0.005):
        self.trim = trim
        self.rows: dict[str, dict] = {}
        self.order: list[str] = []
        self.phase = ""
        self.lock = threading.Lock()
        self.enter("startup")
        threading.Thread(target=self._sample, args=(interval,), daemon=True).start()

    def _sample(self, interval: float) -> None:
        while True:
            with self.lock:
                row = self.rows[self.phase]
                row["peak"] = max(row["peak"], rss())
                row["live"] = max(row["live"], live())
            time.sleep(interval)

    def enter(self, phase: str) -> str:
        """Start `phase` (ending the current one); returns the phase that was current."""
        with self.lock:
            previous = self.phase
            if previous:
                row = self.rows[previous]
                row["end"] = rss()
                row["peak"], row["live"] = max(row["peak"], row["end"]), max(row["live"], live())
                if self.trim:
                    LIBC.malloc_trim(0)
                    row["trimmed"] = rss()
            now = rss()
            row = self.rows.setdefault(phase, {"start": now, "peak": now, "end": now, "trimmed": None, "live": live()})
            if phase not in self.order:
                self.order.append(phase)
            self.phase = phase
        return previous

    def table(self) -> str:
        self.enter("end")
        head = f"{'phase':<58} {'start':>6} {'peak':>6} {'end':>6}" + (f" {'trimmed':>7}" if self.trim else "")
        lines = [head + f" {'live peak':>9}  GB (resident set; live: malloc's bytes in use)"]
        for name in self.order[:-1]:
            row = self.rows[name]
            line = f"{name:<58} {row['start'] / GB:6.2f} {row['peak'] / GB:6.2f} {row['end'] / GB:6.2f}"
            if self.trim:
                line += f" {row['trimmed'] / GB:7.2f}" if row["trimmed"] is not None else f" {'':>7}"
            lines.append(line + f" {row['live'] / GB:9.2f}")
        return "\n".join(lines)


def write_data(folder: Path, sizes: dict[str, int]) -> None:
    for split, n in sizes.items():
        lines = (DIALOGSUM / f"dialogsum.{split}.jsonl").read_text(encoding="utf-8").splitlines()[:n]
        (folder / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def settings(args, data: Path, out: Path) -> dict:
    chosen = {
        "general.output_dir": str(out), "general.run_name": "memory", "general.seed": 42,
        "data.train": [str(data / "train.jsonl")], "data.dev": str(data / "dev.jsonl"), "data.test": str(data / "test.jsonl"),
        "data.sample_submission": None, "data.language": "en",
        "model.name": str(GGUF), "model.max_source_length": args.src, "model.max_target_length": args.tgt,
        "lora.r": 16, "lora.alpha": 32, "lora.target_modules": "all-linear",
        "training.batch_size": args.batch, "training.gradient_accumulation_steps": args.accum,
        "training.eval_batch_size": args.eval_batch, "training.epochs": 1, "training.gradient_checkpointing": args.gc,
        "training.early_stopping_patience": None, "training.save_total_limit": 1, "training.logging_steps": 1,
        "training.learning_rate": 2e-4,
        "generation.num_beams": args.beams, "generation.max_new_tokens": args.new_tokens,
        "generation.no_repeat_ngram_size": args.no_repeat_ngram,
        "metric.tokenizer": "whitespace",
    }
    if args.english_prompt:
        chosen.update({"prompt.system": "Summarize the dialogue in one sentence.", "prompt.user": "{dialogue}"})
    return chosen


def kv_bytes(config, sequences: int, tokens: int) -> int:
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return sequences * tokens * config.num_hidden_layers * 2 * heads * head_dim * 4


def instrument(meter: Meter, args, notes: list[str]):
    """Phase marks on dsum's and transformers' functions; returns the TrainerCallback that marks training steps."""
    import transformers.generation.utils as generation_utils
    from transformers import TrainerCallback

    import dsum.verbs.predict as predict
    import dsum.verbs.train as train
    import dsum.verbs.trainer as trainer

    def marked(name, function):
        def wrapper(*a, **k):
            before = meter.enter(name(*a, **k) if callable(name) else name)
            try:
                return function(*a, **k)
            finally:
                meter.enter(after.get(function, before))
        return wrapper

    after: dict = {}

    def load(*a, **k):
        model, tokenizer = train_load(*a, **k)
        if args.layers:  # the first K decoder layers only (real weights): memory per layer, in less time
            model.model.layers = model.model.layers[: args.layers]
            model.config.num_hidden_layers = args.layers
        return model, tokenizer

    train_load = train.load_model_and_tokenizer
    after[load] = "lora + data"
    train.load_model_and_tokenizer = marked("load model", load)
    evaluate = trainer.DevEvaluation.__call__
    if args.skip_eval:  # training alone: a constant score, no generation
        def evaluate(self, model):
            return {"board_score": 0.0, "rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    after[evaluate] = "save / reload"
    trainer.DevEvaluation.__call__ = marked("eval", evaluate)
    predict_split = predict.predict_split
    predict.predict_split = marked(lambda *a, **k: f"predict {a[3]}", predict_split)

    generate = generation_utils.GenerationMixin.generate

    def generate_marked(self, *a, **k):
        if args.force_length:
            k["min_new_tokens"] = k.get("max_new_tokens")
        ids = k.get("input_ids", a[0] if a else None)
        rows, width = ids.shape
        beams, new = k.get("num_beams") or 1, k.get("max_new_tokens")
        outer = meter.phase.split(":")[0]
        name = f"{outer}: generate {rows}×{beams} beams, {width}+{new} tokens"
        kv = kv_bytes(self.config, rows * beams, width + new)
        if name not in meter.rows:
            notes.append(f"{name}: KV cache at the end {kv / GB:.2f} GB")
        previous = meter.enter(name)
        try:
            return generate(self, *a, **k)
        finally:
            meter.enter(previous)

    generation_utils.GenerationMixin.generate = generate_marked

    class Steps(TrainerCallback):
        def on_step_begin(self, args_, state, control, **kwargs):
            meter.enter("train fwd/bwd #1" if state.global_step == 0 else "train fwd/bwd")

        def on_pre_optimizer_step(self, args_, state, control, **kwargs):
            meter.enter("train optimizer #1" if state.global_step == 0 else "train optimizer")

        def on_optimizer_step(self, args_, state, control, **kwargs):
            meter.enter("train: log / schedule / save")

    return Steps()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gc", action="store_true", help="training.gradient_checkpointing: true")
    parser.add_argument("--train", type=int, default=16, help="training dialogues (the first of train)")
    parser.add_argument("--dev", type=int, default=8, help="dev dialogues (evaluation and the final dev predict)")
    parser.add_argument("--test", type=int, default=2, help="test dialogues (the final submission)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--accum", type=int, default=2)
    parser.add_argument("--eval-batch", type=int, default=32)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=160)
    parser.add_argument("--no-repeat-ngram", type=int, default=2,
                        help="generation.no_repeat_ngram_size (0: skips its per-step Python loop; memory alike)")
    parser.add_argument("--src", type=int, default=512)
    parser.add_argument("--tgt", type=int, default=100)
    parser.add_argument("--english-prompt", action="store_true", help="a one-line English prompt instead of dsum's default")
    parser.add_argument("--force-length", action="store_true", help="every generate() call runs to max_new_tokens")
    parser.add_argument("--trim", action="store_true", help="malloc_trim(0) at the end of each phase")
    parser.add_argument("--no-final-predict", action="store_true", help="stop after training (skip finish_run's predictions)")
    parser.add_argument("--skip-eval", action="store_true", help="no generation in evaluation (training's memory alone)")
    parser.add_argument("--layers", type=int, help="keep the first K of the 30 decoder layers (scaling measurements)")
    args = parser.parse_args()

    meter = Meter(args.trim)
    import torch

    from dsum import load_config
    from dsum.model.loading import load_model_config, with_model_defaults
    from dsum.model.memory import eval_generation, generation_bytes
    from dsum.verbs.doctor import training_estimate

    notes: list[str] = []
    steps = instrument(meter, args, notes)
    if args.no_final_predict:
        import dsum.verbs.train as train

        def no_finish(cfg, run_dir, trainer, tokenizer, data):
            raise SystemExit(0)
        train.finish_run = no_finish
    with tempfile.TemporaryDirectory(prefix="dsum-memory-") as tmp:
        data, out = Path(tmp) / "data", Path(tmp) / "runs"
        data.mkdir()
        write_data(data, {"train": args.train, "dev": args.dev, "test": args.test})
        cfg = load_config(None, settings(args, data, out))
        started = time.perf_counter()
        try:
            from dsum.verbs.train import train

            train(cfg, callbacks=[steps])  # dsum.train without its .env loading, with the step marks
        except SystemExit:
            pass
        seconds = time.perf_counter() - started
    layers = f", first {args.layers} of 30 layers" if args.layers else ""
    print(f"SmolLM2-135M{layers} LoRA r16 all-linear, fp32 CPU ({torch.get_num_threads()} threads), "
          f"MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', 'unset')}: train {args.train} dialogues, batch "
          f"{args.batch} × {args.accum} accumulation, gradient checkpointing {'on' if args.gc else 'off'}, "
          f"{args.src}/{args.tgt} tokens; dev {args.dev}, test {args.test}: eval_batch_size {args.eval_batch}, "
          f"{args.beams} beams, {args.new_tokens} new tokens{' (forced)' if args.force_length else ''}, "
          f"no_repeat_ngram_size {args.no_repeat_ngram}; "
          f"{'English' if args.english_prompt else 'default'} prompt"
          f"{'; evaluation skipped' if args.skip_eval else ''}; {seconds:.0f} s")
    print(meter.table())
    for note in notes:
        print(note)
    print(f"ru_maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB:.2f} GB")
    model_config = load_model_config(cfg.model)
    generation = eval_generation(with_model_defaults(cfg, model_config))
    for precision in ("auto", "fp32"):
        estimate = training_estimate(cfg.model_copy(update={"training": cfg.training.model_copy(update={"precision": precision})}),
                                     model_config)
        print(f"doctor's estimate (precision {precision}): {estimate.total / GB:.2f} GB = {estimate.describe()}")
        width = 4 if precision == "fp32" else 2
        both = replace(estimate, generation=generation_bytes(model_config, generation, width))
        print(f"  with dev evaluation's generation ({generation}): {both.total / GB:.2f} GB = {both.describe()}")
    print(json.dumps({n: {k: v and round(v / GB, 3) for k, v in r.items()} for n, r in meter.rows.items() if n != "end"}))


if __name__ == "__main__":
    sys.exit(main())
