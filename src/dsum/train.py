"""Fine-tune a seq2seq summarizer from a config: one readable path from the YAML to runs/<name>/.

Compared with the organiser baseline: examples are padded per batch (not to the split's longest),
batches are grouped by length, pad positions are -100 in the labels so they never reach the loss,
every special token of the data is added, and the kept checkpoint is the best by the board's
ROUGE on dev, not by loss.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from dsum.atomic import atomic_write_text, write_json
from dsum.config import Config
from dsum.data import Example, file_sha256, read_examples, reference_map
from dsum.errors import UserError
from dsum.generate import clean_summary, generation_kwargs
from dsum.metric import score_texts
from dsum.modeling import load_model_and_tokenizer
from dsum.rundir import choose_run_dir, environment_record
from dsum.tracking import Tracker, redact, start_tracker
from dsum.text import Normalizer, normalizer_from_config, special_tokens_for

log = logging.getLogger("dsum.train")


@dataclass
class Features:
    rows: list[dict]
    truncated_sources: int
    truncated_targets: int


def clean_texts(texts: Sequence[str], normalizer: Normalizer | None) -> list[str]:
    return [normalizer(t) for t in texts] if normalizer else list(texts)


def tokenize_examples(tokenizer, sources: Sequence[str], targets: Sequence[str], max_source: int, max_target: int):
    """input_ids/attention_mask/labels per example (no padding: the collator pads per batch)."""
    full_src = tokenizer(list(sources))["input_ids"]
    full_tgt = tokenizer(text_target=list(targets))["input_ids"]
    enc = tokenizer(list(sources), truncation=True, max_length=max_source)
    labels = tokenizer(text_target=list(targets), truncation=True, max_length=max_target)["input_ids"]
    rows = [
        {"input_ids": ids, "attention_mask": mask, "labels": lab}
        for ids, mask, lab in zip(enc["input_ids"], enc["attention_mask"], labels)
    ]
    return Features(
        rows=rows,
        truncated_sources=sum(len(ids) > max_source for ids in full_src),
        truncated_targets=sum(len(ids) > max_target for ids in full_tgt),
    )


def make_collator(tokenizer, model):
    """Pads each batch to its own longest example; padded label positions are -100 (ignored by the loss)."""
    from transformers import DataCollatorForSeq2Seq

    # Multiples of 8 use tensor cores on GPUs; on CPU they only add padding.
    multiple = 8 if torch.cuda.is_available() else None
    return DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100, pad_to_multiple_of=multiple)


def resolve_precision(requested: str) -> str:
    """auto → bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU; refuse fp16/bf16 without a GPU."""
    has_gpu = torch.cuda.is_available()
    if requested == "auto":
        if not has_gpu:
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if requested in ("fp16", "bf16") and not has_gpu:
        raise UserError(
            f"training.precision={requested} needs a CUDA GPU and none is visible; "
            "use --set training.precision=auto (fp32 on CPU) or run on a GPU machine"
        )
    if requested == "bf16" and not torch.cuda.is_bf16_supported():
        raise UserError("this GPU does not support bf16; use --set training.precision=fp16 (or auto)")
    return requested


def rdrop_loss(model, inputs: dict, alpha: float, label_smoothing: float) -> torch.Tensor:
    """R-Drop: two forward passes with different dropout; CE of both plus alpha × symmetric KL."""
    labels = inputs["labels"]
    first = model(**inputs).logits
    second = model(**inputs).logits
    mask = labels.ne(-100)
    ce = sum(
        F.cross_entropy(logits[mask], labels[mask], label_smoothing=label_smoothing) for logits in (first, second)
    ) / 2
    p, q = F.log_softmax(first[mask], dim=-1), F.log_softmax(second[mask], dim=-1)
    kl = (F.kl_div(p, q, log_target=True, reduction="batchmean") + F.kl_div(q, p, log_target=True, reduction="batchmean")) / 2
    return ce + alpha * kl


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def shared_run_dir(cfg: Config, resume: bool) -> Path:
    """Every process of a torchrun job must write to the one directory rank 0 chose."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return choose_run_dir(cfg, resume)
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    chosen = [choose_run_dir(cfg, resume) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(chosen, src=0)
    return chosen[0]


def train(cfg: Config, resume: bool = False, callbacks: Sequence = ()) -> Path:
    """Train, keep the best checkpoint by the board's score, score dev, write a test submission.

    `callbacks` are extra TrainerCallbacks (dsum tune adds its Optuna pruning callback).
    """
    from transformers import (
        EarlyStoppingCallback,
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
        TrainerCallback,
    )

    from dsum.record import resolve_parent, write_record
    from dsum.runs import mark_status

    precision = resolve_precision(cfg.training.precision)
    parent_dir = resolve_parent(cfg)  # an unknown parent fails before any work
    normalizer = normalizer_from_config(cfg.data)
    train_examples = [ex for path in cfg.data.train for ex in read_examples(path, require_summary=True)]
    dev_examples = read_examples(cfg.data.dev, require_summary=True)
    run_dir = shared_run_dir(cfg, resume)
    main = is_main_process()
    if resume and not any(run_dir.glob("checkpoints/checkpoint-*")):
        raise UserError(f"--resume: no checkpoint under {run_dir}/checkpoints; start without --resume")

    train_sources = clean_texts([ex.dialogue for ex in train_examples], normalizer)
    train_targets = clean_texts([ex.summaries[0] for ex in train_examples], normalizer)
    dev_sources = clean_texts([ex.dialogue for ex in dev_examples], normalizer)
    dev_targets = clean_texts([ex.summaries[0] for ex in dev_examples], normalizer)
    special_tokens = special_tokens_for(train_sources + train_targets + dev_sources)
    model, tokenizer = load_model_and_tokenizer(cfg.model, special_tokens, train_texts=train_sources + train_targets)
    # max_length=None: the model config's default of 20 would otherwise cap eval generation (#10032).
    model.generation_config.update(max_length=None, **generation_kwargs(cfg.generation))

    m = cfg.model
    train_features = tokenize_examples(tokenizer, train_sources, train_targets, m.max_source_length, m.max_target_length)
    dev_features = tokenize_examples(tokenizer, dev_sources, dev_targets, m.max_source_length, m.max_target_length)
    # Dev sorted by length: each eval batch pads to its own longest dialogue (sequential sampler keeps order).
    dev_order = sorted(range(len(dev_examples)), key=lambda i: len(dev_features.rows[i]["input_ids"]), reverse=True)
    dev_rows = [dev_features.rows[i] for i in dev_order]
    dev_fnames = [dev_examples[i].fname for i in dev_order]
    references = reference_map(dev_examples)
    if main:
        print(
            f"data: {len(train_examples)} train / {len(dev_examples)} dev examples; "
            f"truncated to {m.max_source_length}/{m.max_target_length} tokens: "
            f"{train_features.truncated_sources} train dialogues, {train_features.truncated_targets} train summaries, "
            f"{dev_features.truncated_sources} dev dialogues; {len(special_tokens)} special tokens"
        )
        run_dir.mkdir(parents=True, exist_ok=True)
        mark_status(run_dir, "running")
        atomic_write_text(run_dir / "config.yaml", redact(cfg.to_yaml()))
        hashes = {str(p): file_sha256(p) for p in [*cfg.data.train, cfg.data.dev, cfg.data.test] if Path(p).exists()}
        write_json(run_dir / "environment.json", redact(environment_record(hashes)))

    def compute_metrics(eval_pred) -> dict[str, float]:
        ids = eval_pred.predictions
        ids = ids[0] if isinstance(ids, tuple) else ids
        ids = torch.as_tensor(ids)
        ids = torch.where(ids == -100, tokenizer.pad_token_id, ids)  # -100 crashes decode (transformers#22634)
        texts = [clean_summary(t) for t in tokenizer.batch_decode(ids, skip_special_tokens=False)]
        result = score_texts(dict(zip(dev_fnames, texts)), references, tokenizer=cfg.metric.tokenizer)
        return {"board_score": result.score, "rouge1": result.rouge1, "rouge2": result.rouge2, "rougeL": result.rougeL}

    t = cfg.training
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    args = Seq2SeqTrainingArguments(
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
        predict_with_generate=True,
        train_sampling_strategy="group_by_length",
        report_to=[],
        disable_tqdm=not main,
        dataloader_pin_memory=torch.cuda.is_available(),
        ddp_backend="gloo" if distributed and not torch.cuda.is_available() else None,
    )

    class JsonlLog(TrainerCallback):
        """Every Trainer log line (loss, lr, eval scores) appended to train_log.jsonl."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                with open(run_dir / "train_log.jsonl", "a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")

    class DsumTrainer(Seq2SeqTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if t.rdrop_alpha > 0 and model.training:
                return rdrop_loss(model, inputs, t.rdrop_alpha, t.label_smoothing)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    tracker = start_tracker(cfg, run_dir) if main else Tracker(cfg, run_dir, run_dir.name)

    class TrackerLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                tracker.log(logs, state.global_step)

    trainer_callbacks = [JsonlLog(), TrackerLog(), *callbacks]
    if t.early_stopping_patience:
        trainer_callbacks.append(EarlyStoppingCallback(t.early_stopping_patience, t.early_stopping_threshold))
    trainer = DsumTrainer(
        model=model,
        args=args,
        train_dataset=train_features.rows,
        eval_dataset=dev_rows,
        data_collator=make_collator(tokenizer, model),
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        callbacks=trainer_callbacks,
    )
    if main and not resume:
        (run_dir / "train_log.jsonl").unlink(missing_ok=True)
    try:
        trainer.train(resume_from_checkpoint=True if resume else None)
        if not main:
            return run_dir
        metrics = finish_run(cfg, run_dir, trainer, tokenizer, dev_examples, normalizer)
    except BaseException:
        # A crash, a pruned trial or Ctrl-C: the tracker and `dsum runs` must not show it as running.
        if main:
            tracker.finish({}, failed=True)
            mark_status(run_dir, "failed")
        raise
    metrics["truncated"] = {
        "train_sources": train_features.truncated_sources,
        "train_targets": train_features.truncated_targets,
        "dev_sources": dev_features.truncated_sources,
    }
    write_json(run_dir / "metrics.json", metrics)
    tracker.log_predictions(pd.read_csv(run_dir / "dev_predictions.csv"))
    if cfg.tracking.log_model:
        tracker.log_model(run_dir / "checkpoint-best")
    tracker.finish({"dev": metrics["dev"], "best_epoch": metrics["best_epoch"], "train_runtime_s": metrics["train_runtime_s"]})
    write_record(run_dir, cfg, metrics, parent_dir)
    mark_status(run_dir, "finished")
    return run_dir


def best_epoch(state) -> float | None:
    evals = [h for h in state.log_history if "eval_board_score" in h]
    return max(evals, key=lambda h: h["eval_board_score"])["epoch"] if evals else None


def finish_run(cfg: Config, run_dir: Path, trainer, tokenizer, dev_examples: list[Example], normalizer) -> dict:
    """Save the best checkpoint, score it on dev (per-row scores saved), write the test submission."""
    from dsum.predict import predict_split

    best_dir = run_dir / "checkpoint-best"
    trainer.save_model(str(best_dir))
    tokenizer.save_pretrained(str(best_dir))
    model, state = trainer.model, trainer.state
    dev = predict_split(cfg, model, tokenizer, "dev", run_dir / "dev_predictions.csv", normalizer)
    test = predict_split(cfg, model, tokenizer, "test", run_dir / "submission.csv", normalizer)
    print(f"dev board score {dev['score']:.2f} (R1 {dev['rouge1']:.4f} R2 {dev['rouge2']:.4f} RL {dev['rougeL']:.4f})")
    print(f"submission: {test['path']}")
    return {
        "dev": {k: dev[k] for k in ("score", "rouge1", "rouge2", "rougeL", "rows")},
        "submission": test["path"],
        "best_checkpoint": state.best_model_checkpoint,
        "best_epoch": best_epoch(state),
        "global_step": state.global_step,
        "epochs_trained": state.epoch,
        "train_runtime_s": next((h["train_runtime"] for h in state.log_history if "train_runtime" in h), None),
    }
