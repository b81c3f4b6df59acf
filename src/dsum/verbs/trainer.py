"""The Hugging Face Trainer as dsum sets it up: collators, dsum's loss and dev evaluation, arguments, callbacks.

    build_trainer(cfg, ...) = training_arguments + make_collator + DevEvaluation + DsumTrainer (+ callbacks)

Compared with the organiser baseline: examples are padded per batch (not to the split's longest), batches are
grouped by length, pad positions are -100 in the labels so they never reach the loss, and evaluation is the
board's ROUGE on dev from the generator `dsum predict` uses, at training's precision.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback

from dsum.config import Config
from dsum.data.files import reference_map
from dsum.data.splits import TrainData
from dsum.metric.rouge import score_texts
from dsum.model.generate import generate_summaries
from dsum.model.tokenization import Features, is_decoder_only
from dsum.runs.tracking import Tracker
from dsum.util.distributed import world_size
from dsum.util.errors import UserError
from dsum.verbs.faults import FaultTolerance

# The board score runs 0-100; early_stopping_threshold is given on ROUGE's 0-1 scale, as the
# organiser's baseline gives it (0.001 there = 0.1 board points here).
SCORE_SCALE = 100


def make_collator(tokenizer, model, packing: bool = False):
    """Pads each batch to its own longest example; padded label positions are -100 (ignored by the loss).
    packing: batches of packed rows (dsum.model.packing: positions restart per example, no attention mask)."""
    from transformers import DataCollatorForSeq2Seq

    # Multiples of 8 use tensor cores on GPUs; on CPU they only add padding.
    multiple = 8 if torch.cuda.is_available() else None
    if packing:
        from dsum.model.packing import PackedCollator, packing_problem

        if problem := packing_problem(model):
            raise UserError(problem)
        return PackedCollator(tokenizer.pad_token_id, multiple)
    if is_decoder_only(model.config):
        return RightPaddingCollator(tokenizer, multiple)
    return DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100, pad_to_multiple_of=multiple)


class RightPaddingCollator:
    """Decoder-only training batches, padded on the right whatever the tokenizer's padding_side (left, for
    generation): labels -100 and attention 0 on the padding, so neither the loss nor attention sees it."""

    def __init__(self, tokenizer, multiple: int | None):
        self.tokenizer, self.multiple = tokenizer, multiple

    def __call__(self, rows: list[dict]) -> dict:
        inputs = [{"input_ids": row["input_ids"]} for row in rows]
        batch = self.tokenizer.pad(inputs, padding_side="right", pad_to_multiple_of=self.multiple, return_tensors="pt")
        width = batch["input_ids"].shape[1]
        batch["labels"] = torch.tensor([row["labels"] + [-100] * (width - len(row["labels"])) for row in rows])
        return batch


def rdrop_loss(model, inputs: dict, alpha: float, label_smoothing: float, num_items_in_batch=None) -> torch.Tensor:
    """R-Drop: two forward passes with different dropout; CE of both plus alpha × symmetric KL.

    Summed over label tokens and divided by num_items_in_batch (the label tokens of the whole
    accumulated batch) when the Trainer gives it: the Trainer then treats the loss as already scaled
    for gradient accumulation. Without it, a mean over this batch's tokens (the Trainer divides).
    """
    labels = inputs["labels"]
    first = model(**inputs).logits
    second = model(**inputs).logits
    mask = labels.ne(-100)
    ce = sum(
        F.cross_entropy(logits[mask], labels[mask], label_smoothing=label_smoothing, reduction="sum")
        for logits in (first, second)
    ) / 2
    p, q = F.log_softmax(first[mask], dim=-1), F.log_softmax(second[mask], dim=-1)
    kl = (F.kl_div(p, q, log_target=True, reduction="sum") + F.kl_div(q, p, log_target=True, reduction="sum")) / 2
    tokens = num_items_in_batch if num_items_in_batch is not None else mask.sum()
    return (ce + alpha * kl) / tokens


def eval_rows(rows: int, subset: int | None, seed: int) -> list[int]:
    """The dev rows evaluation generates for: all, or `subset` of them drawn with the seed (the same every time)."""
    if subset is None or subset >= rows:
        return list(range(rows))
    import random

    return sorted(random.Random(seed).sample(range(rows), subset))


class DevEvaluation:
    """Dev board score of the model being trained, by the generator `dsum predict` uses, at training's precision."""

    def __init__(self, cfg: Config, tokenizer, data: TrainData, precision: str):
        self.cfg, self.tokenizer, self.precision = cfg, tokenizer, precision
        rows = eval_rows(len(data.dev), cfg.training.eval_subset, cfg.general.seed)
        self.fnames = [data.dev[i].fname for i in rows]
        self.sources = [data.dev_sources[i] for i in rows]
        self.references = reference_map([data.dev[i] for i in rows])

    def __call__(self, model) -> dict[str, float]:
        rank, world = int(os.environ.get("RANK", "0")), world_size()
        # Each rank generates its share of predict's own batches: the same summaries as dsum predict.
        texts = generate_summaries(
            model, self.tokenizer, self.sources, self.cfg.generation, self.cfg.training.eval_batch_size,
            self.cfg.model.max_source_length, self.precision, progress=False, shard=(rank, world), prompt=self.cfg.prompt,
            keep_conversion=False,  # generation.engine=ctranslate2: these weights change before the next evaluation
        )
        found = {fname: text for fname, text in zip(self.fnames, texts) if text is not None}
        if world > 1:
            import torch.distributed as dist

            shares = [None] * world
            dist.all_gather_object(shares, found)
            found = {k: v for share in shares for k, v in share.items()}
        result = score_texts(found, self.references, analyser=self.cfg.metric.tokenizer)
        return {"board_score": result.score, "rouge1": result.rouge1, "rouge2": result.rouge2, "rougeL": result.rougeL}


class DsumTrainer(FaultTolerance, Trainer):
    """The Trainer with dsum's evaluation (generation + the board's score), optional R-Drop loss, and for
    decoder-only models the loss with the output layer run on label positions only (dsum.model.label_loss);
    FaultTolerance (dsum.verbs.faults): the divergence check, the out-of-memory back-off, complete-only checkpoints."""

    def __init__(self, *args, dev_evaluation: DevEvaluation, rdrop_alpha: float = 0.0, label_smoothing: float = 0.0,
                 label_only_loss: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.dev_evaluation = dev_evaluation
        self.rdrop_alpha = rdrop_alpha
        self.rdrop_label_smoothing = label_smoothing
        self.label_only_loss = label_only_loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.rdrop_alpha > 0 and model.training:
            if not self.model_accepts_loss_kwargs:
                num_items_in_batch = None  # the Trainer divides by the accumulation steps itself
            loss = rdrop_loss(model, inputs, self.rdrop_alpha, self.rdrop_label_smoothing, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss does: DDP averages gradients
            return loss
        if self.label_only_loss and not return_outputs and "labels" in inputs:
            from dsum.model.label_loss import label_only_loss

            if not self.model_accepts_loss_kwargs:
                num_items_in_batch = None  # the Trainer divides by the accumulation steps itself
            loss = label_only_loss(model, inputs, num_items_in_batch, self.rdrop_label_smoothing)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss does: DDP averages gradients
            return loss
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def _issue_warnings_after_load(self, load_result) -> None:
        """load_best_model_at_end: weights tied to a loaded one (embeddings, lm_head) are not saved, and are not
        missing; only keys still missing after that are worth a warning."""
        from dsum.model.tied import untied_missing_keys

        kept = untied_missing_keys(self.model, load_result.missing_keys)
        super()._issue_warnings_after_load(load_result._replace(missing_keys=kept))

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        start = time.perf_counter()
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in self.dev_evaluation(self.model).items()}
        metrics[f"{metric_key_prefix}_runtime"] = round(time.perf_counter() - start, 3)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


class JsonlLog(TrainerCallback):
    """Every Trainer log line (loss, lr, eval scores) appended to train_log.jsonl."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")


class TrackerLog(TrainerCallback):
    def __init__(self, tracker: Tracker):
        self.tracker = tracker

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.tracker.log(logs, state.global_step)


def early_stopping(cfg: Config):
    """EarlyStoppingCallback on the board score, its threshold taken from ROUGE's 0-1 scale to the score's 0-100."""
    from transformers import EarlyStoppingCallback

    t = cfg.training
    return EarlyStoppingCallback(t.early_stopping_patience, t.early_stopping_threshold * SCORE_SCALE)


def optimizer_name(cfg: Config, cuda: bool | None = None) -> str:
    """auto: paged 8-bit AdamW (bitsandbytes) for LoRA on CUDA, where optimizer states matter; else AdamW.

    `cuda`: whether the run has a CUDA GPU (default: this machine); `dsum doctor` asks for a CUDA run.
    """
    import importlib.util

    if cfg.training.optimizer != "auto":
        return cfg.training.optimizer
    cuda = torch.cuda.is_available() if cuda is None else cuda
    paged = cfg.lora is not None and cuda and importlib.util.find_spec("bitsandbytes") is not None
    return "paged_adamw_8bit" if paged else "adamw_torch"


def training_arguments(cfg: Config, run_dir: Path, precision: str):
    from transformers import TrainingArguments

    t = cfg.training
    distributed = world_size() > 1
    return TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        learning_rate=t.learning_rate,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        num_train_epochs=t.epochs,
        warmup_steps=t.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=t.weight_decay,
        lr_scheduler_type=t.scheduler,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        activation_checkpointing=t.gradient_checkpointing,
        # Non-reentrant: gradients reach LoRA adapters even though the frozen inputs need none.
        activation_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        optim=optimizer_name(cfg),
        fp16=precision == "fp16",
        bf16=precision == "bf16",
        label_smoothing_factor=t.label_smoothing,
        seed=cfg.general.seed,
        data_seed=cfg.general.seed,
        eval_strategy=t.eval_strategy,
        save_strategy=t.eval_strategy,
        eval_steps=t.eval_steps,
        save_steps=t.eval_steps,
        logging_steps=t.logging_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="board_score",
        greater_is_better=True,
        train_sampling_strategy="group_by_length",
        report_to=[],
        disable_tqdm=True,  # dsum.verbs.train_progress shows the run instead
        dataloader_pin_memory=torch.cuda.is_available(),
        ddp_backend="gloo" if distributed and not torch.cuda.is_available() else None,
        # Without CUDA, accelerate makes a torchrun job one DDP group (MULTI_CPU, gloo) only when told it runs on
        # the CPU; otherwise every rank trains its own copy with no gradient exchange.
        use_cpu=distributed and not torch.cuda.is_available(),
    )


def build_trainer(
    cfg: Config, run_dir: Path, model, tokenizer, features: Features, data: TrainData, precision: str,
    tracker: Tracker, callbacks: Sequence = (),
) -> DsumTrainer:
    from transformers import PrinterCallback, ProgressCallback

    from dsum.verbs.train_progress import TrainingProgress

    trainer_callbacks = [JsonlLog(run_dir / "train_log.jsonl"), TrackerLog(tracker), TrainingProgress(), *callbacks]
    if cfg.training.early_stopping_patience:
        trainer_callbacks.append(early_stopping(cfg))
    trainer = DsumTrainer(
        model=model,
        args=training_arguments(cfg, run_dir, precision),
        train_dataset=packed_rows(cfg, features.rows) if cfg.training.packing else features.rows,
        eval_dataset=data.dev,  # evaluation generates from the dev texts (DevEvaluation); the Trainer only checks it is set
        data_collator=make_collator(tokenizer, model, cfg.training.packing),
        processing_class=tokenizer,
        callbacks=trainer_callbacks,
        dev_evaluation=DevEvaluation(cfg, tokenizer, data, precision),
        rdrop_alpha=cfg.training.rdrop_alpha,
        label_only_loss=is_decoder_only(model.config),
        label_smoothing=cfg.training.label_smoothing,
    )
    for printer in (PrinterCallback, ProgressCallback):  # the log dicts and tqdm bar TrainingProgress replaces
        trainer.remove_callback(printer)
    return trainer


def packed_rows(cfg: Config, rows: list[dict]) -> list[dict]:
    """training.packing: the examples in rows of at most max_source_length + max_target_length tokens."""
    from dsum.model.packing import pack_rows

    return pack_rows(rows, cfg.model.max_source_length + cfg.model.max_target_length)
