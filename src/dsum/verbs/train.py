"""Fine-tune a seq2seq summarizer from a config: one readable path from the YAML to runs/<name>/.

    train(cfg) = checks → load_data → claim the run directory → model + features → build_trainer → finish_run

Compared with the organiser baseline: examples are padded per batch (not to the split's longest),
batches are grouped by length, pad positions are -100 in the labels so they never reach the loss,
labels end in eos (KoBART's tokenizer adds none), every special token of the data is added, and
the kept checkpoint is the best by the board's ROUGE on dev, computed by the same generator as
`dsum predict` at the same precision, so metrics.json and `dsum predict` agree.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback

from dsum.util.atomic import atomic_write_text, write_json
from dsum.config import Config
from dsum.data.files import Example, read_examples, reference_map
from dsum.util.errors import UserError
from dsum.model.generate import generate_summaries, generation_kwargs
from dsum.model.length_control import fit_for_training
from dsum.metric.rouge import score_texts
from dsum.model.loading import (
    check_lengths,
    check_quantization,
    load_model_and_tokenizer,
    load_model_config,
    set_adapter_base,
    with_model_defaults,
)
from dsum.model.precision import resolve_precision
from dsum.runs.directory import claim_run_dir, mark_status, write_run_files
from dsum.data.text import Normalizer, normalizer_from_config, special_tokens_for
from dsum.model.checks import check_settings
from dsum.model.tokenization import Features, framing_for, is_decoder_only
from dsum.runs.tracking import Tracker, start_tracker

log = logging.getLogger(__name__)

# The board score runs 0-100; early_stopping_threshold is given on ROUGE's 0-1 scale, as the
# organiser's baseline gives it (0.001 there = 0.1 board points here).
SCORE_SCALE = 100


@dataclass
class TrainData:
    """The examples of a run and their texts as the model sees them (cleaned when data.clean is on)."""

    train: list[Example]
    dev: list[Example]
    train_sources: list[str]
    train_targets: list[str]
    dev_sources: list[str]
    normalizer: Normalizer | None
    special_tokens: list[str]


def clean_texts(texts: Sequence[str], normalizer: Normalizer | None) -> list[str]:
    return [normalizer(t) for t in texts] if normalizer else list(texts)


def load_data(cfg: Config) -> TrainData:
    normalizer = normalizer_from_config(cfg.data)
    train_examples = [ex for path in cfg.data.train for ex in read_examples(path, require_summary=True)]
    dev_examples = read_examples(cfg.data.dev, require_summary=True)
    train_sources = clean_texts([ex.dialogue for ex in train_examples], normalizer)
    train_targets = clean_texts([ex.summaries[0] for ex in train_examples], normalizer)
    dev_sources = clean_texts([ex.dialogue for ex in dev_examples], normalizer)
    # The data's #…# tokens from every text of the run, test included, counted over the whole: the K
    # folds of one pool then add the same tokens in the same order, so their models share one
    # vocabulary (logit ensembles and weight averages need it).
    dev_targets = clean_texts([s for ex in dev_examples for s in ex.summaries], normalizer)
    test_sources = clean_texts([ex.dialogue for ex in read_examples(cfg.data.test)], normalizer)
    specials = special_tokens_for(train_sources + train_targets + dev_sources + dev_targets + test_sources)
    return TrainData(train_examples, dev_examples, train_sources, train_targets, dev_sources, normalizer, specials)


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


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def init_distributed() -> None:
    """Join the torchrun job: each rank takes its own GPU before the first collective.

    NCCL binds a communicator to the current device, so set_device must come first or every rank
    lands on cuda:0.
    """
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl")
    else:
        dist.init_process_group(backend="gloo")


def shared_run_dir(cfg: Config, resume: bool | Path) -> Path:
    """Every process of a torchrun job must write to the one directory rank 0 claimed."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return claim_run_dir(cfg, resume)
    import torch.distributed as dist

    init_distributed()
    chosen = [claim_run_dir(cfg, resume) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(chosen, src=0)
    return chosen[0]


def add_adapters(cfg: Config, model, tokenizer, run_dir: Path, main: bool):
    """LoRA adapters on the model. A tiny model exists nowhere else: its base is saved as run_dir/base
    (finish_run makes checkpoint-best name it as ../base, so the run directory loads anywhere)."""
    from dsum.model.loading import wrap_lora

    base = None
    if cfg.model.tiny is not None:
        base = str((run_dir / "base").resolve())
        if main and not (run_dir / "base" / "config.json").is_file():
            model.save_pretrained(str(run_dir / "base"))
            tokenizer.save_pretrained(str(run_dir / "base"))
    return wrap_lora(model, cfg.lora, base)


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
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        # Each rank generates its share of predict's own batches: the same summaries as dsum predict.
        texts = generate_summaries(
            model, self.tokenizer, self.sources, self.cfg.generation, self.cfg.training.eval_batch_size,
            self.cfg.model.max_source_length, self.precision, progress=False, shard=(rank, world), prompt=self.cfg.prompt,
        )
        found = {fname: text for fname, text in zip(self.fnames, texts) if text is not None}
        if world > 1:
            import torch.distributed as dist

            shares = [None] * world
            dist.all_gather_object(shares, found)
            found = {k: v for share in shares for k, v in share.items()}
        result = score_texts(found, self.references, analyser=self.cfg.metric.tokenizer)
        return {"board_score": result.score, "rouge1": result.rouge1, "rouge2": result.rouge2, "rougeL": result.rougeL}


class DsumTrainer(Trainer):
    """The Trainer with dsum's evaluation (generation + the board's score), optional R-Drop loss, and for
    decoder-only models the loss with the output layer run on label positions only (dsum.model.label_loss)."""

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
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
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
        disable_tqdm=not is_main_process(),
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
    trainer_callbacks = [JsonlLog(run_dir / "train_log.jsonl"), TrackerLog(tracker), *callbacks]
    if cfg.training.early_stopping_patience:
        trainer_callbacks.append(early_stopping(cfg))
    return DsumTrainer(
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


def packed_rows(cfg: Config, rows: list[dict]) -> list[dict]:
    """training.packing: the examples in rows of at most max_source_length + max_target_length tokens."""
    from dsum.model.packing import pack_rows

    return pack_rows(rows, cfg.model.max_source_length + cfg.model.max_target_length)


def last_checkpoint_step(run_dir: Path) -> int | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = run_dir / "checkpoints"
    last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    return int(last.rsplit("-", 1)[-1]) if last else None


def trim_log(path: Path, step: int) -> None:
    """Drop train_log.jsonl lines logged after `step`, the checkpoint a resume restarts from: the
    resumed run logs those steps again, and curves must not show them twice."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def train(cfg: Config, resume: bool | Path = False, callbacks: Sequence = ()) -> Path:
    """Train, keep the best checkpoint by the board's score, score dev, write a test submission.

    `resume`: True continues this config's newest run that did not finish; a path names the run.
    `callbacks` are extra TrainerCallbacks (dsum tune adds its Optuna pruning callback).
    """
    from dsum.runs.record import resolve_parent
    from dsum.verbs.predict import check_split_inputs

    # Everything a user can get wrong is refused here, before the run directory or the model exists.
    model_config = load_model_config(cfg.model)
    cfg = with_model_defaults(cfg, model_config)
    decoder_only = is_decoder_only(model_config)
    check_lengths(cfg.model, cfg.generation.max_new_tokens, model_config)
    check_quantization(cfg.lora)
    from dsum.model.quantization import check_optimizer

    check_optimizer(cfg.training.optimizer)  # paged optimizers need CUDA; 4bit/8bit run wherever bitsandbytes does
    check_settings(cfg, model_config)  # LoRA targets and the prompt's chat template, before the run directory
    if cfg.training.packing and not decoder_only:
        raise UserError("training.packing is for decoder-only models: set training.packing=false for a seq2seq model")
    if decoder_only and cfg.generation.length_control != "none":
        raise UserError("generation.length_control=buckets is for seq2seq models: set generation.length_control=none")
    precision = resolve_precision(cfg.training.precision, model_config.model_type)
    parent_dir = resolve_parent(cfg)
    data = load_data(cfg)
    check_split_inputs(cfg, "test")  # the test file and the sample submission: refused now, not after training

    run_dir = shared_run_dir(cfg, resume)
    main = is_main_process()
    tracker = Tracker(cfg, run_dir, run_dir.name)
    try:
        model, tokenizer = load_model_and_tokenizer(
            cfg.model, data.special_tokens, data.train_sources + data.train_targets,
            cfg.lora.quantization if cfg.lora else "none", cfg.prompt,
        )
        if cfg.lora is not None:
            model = add_adapters(cfg, model, tokenizer, run_dir, main)
        # max_length=None: the model config's default of 20 would otherwise cap generation (#10032).
        model.generation_config.update(max_length=None, **generation_kwargs(cfg.generation))
        m = cfg.model
        framing = framing_for(model.config, tokenizer, cfg.prompt)
        features = framing.encode_examples(data.train_sources, data.train_targets, m.max_source_length, m.max_target_length)
        _, dev_cut = framing.encode_prompts(data.dev_sources, m.max_source_length)
        # generation.length_control=buckets (seq2seq only, refused above otherwise): fitted on these features,
        # saved with the model (dsum.model.length_control).
        buckets = fit_for_training(model, features.rows, cfg.generation)
        if main:
            log.info(
                f"data: {len(data.train)} train / {len(data.dev)} dev examples; "
                f"truncated to {m.max_source_length}/{m.max_target_length} tokens: "
                f"{features.truncated_sources} train dialogues, {features.truncated_targets} train summaries, "
                f"{dev_cut} dev dialogues; {len(data.special_tokens)} special tokens; {framing.describe()}"
            )
            data_files = [*cfg.data.train, cfg.data.dev, cfg.data.test, cfg.data.sample_submission]
            write_run_files(run_dir, cfg, [path for path in data_files if path is not None])
            if buckets:
                write_json(run_dir / "length_buckets.json", buckets)
            tracker = start_tracker(cfg, run_dir)
        trainer = build_trainer(cfg, run_dir, model, tokenizer, features, data, precision, tracker, callbacks)
        log_file = run_dir / "train_log.jsonl"
        if main and resume:
            trim_log(log_file, last_checkpoint_step(run_dir))  # claim_run_dir made sure a checkpoint exists
        elif main:
            log_file.unlink(missing_ok=True)
        trainer.train(resume_from_checkpoint=True if resume else None)
        if not main:
            return run_dir
        metrics = finish_run(cfg, run_dir, trainer, tokenizer, data.normalizer)
    except BaseException:
        # A crash, a pruned trial or Ctrl-C: the tracker and `dsum runs` must not show it as running.
        if main:
            tracker.finish({}, failed=True)
            mark_status(run_dir, "failed")
        raise
    metrics["truncated"] = {
        "train_sources": features.truncated_sources,
        "train_targets": features.truncated_targets,
        "dev_sources": dev_cut,
    }
    write_json(run_dir / "metrics.json", metrics)
    tracker.log_predictions(pd.read_csv(run_dir / "dev_predictions.csv"))
    if cfg.tracking.log_model:
        tracker.log_model(run_dir / "checkpoint-best")
    tracker.finish({"dev": metrics["dev"], "best_epoch": metrics["best_epoch"], "train_runtime_s": metrics["train_runtime_s"]})
    from dsum.runs.record import write_record

    write_record(run_dir, cfg, metrics, parent_dir)
    mark_status(run_dir, "finished")
    return run_dir


def best_epoch(state) -> float | None:
    evals = [h for h in state.log_history if "eval_board_score" in h]
    return max(evals, key=lambda h: h["eval_board_score"])["epoch"] if evals else None


def finish_run(cfg: Config, run_dir: Path, trainer, tokenizer, normalizer) -> dict:
    """Save the best checkpoint, score it on dev (per-row scores saved), write the test submission.

    A submission that cannot be made (empty answers left, a test file that does not read) leaves the run
    finished: metrics say why under submission_problem, and `submission` is None.
    """
    from dsum.verbs.predict import predict_split

    best_dir = run_dir / "checkpoint-best"
    trainer.save_model(str(best_dir))
    tokenizer.save_pretrained(str(best_dir))
    if cfg.lora is not None and cfg.model.tiny is not None:
        set_adapter_base(best_dir, "../base")
    model, state = trainer.model, trainer.state
    dev = predict_split(cfg, model, tokenizer, "dev", run_dir / "dev_predictions.csv", normalizer)
    log.info(f"dev board score {dev['score']:.2f} (R1 {dev['rouge1']:.4f} R2 {dev['rouge2']:.4f} RL {dev['rougeL']:.4f})")
    submission, problem = None, None
    try:
        submission = predict_split(cfg, model, tokenizer, "test", run_dir / "submission.csv", normalizer)["path"]
        log.info(f"submission: {submission}")
    except UserError as exc:
        # The training succeeded: its checkpoint and dev score stand; only the test file could not be made.
        problem = str(exc)
        log.warning(f"training finished, but it wrote no submission: {problem}")
    return {
        "dev": {k: dev[k] for k in ("score", "rouge1", "rouge2", "rougeL", "rows")},
        "submission": submission,
        **({"submission_problem": problem} if problem else {}),
        "best_checkpoint": state.best_model_checkpoint,
        "best_epoch": best_epoch(state),
        "global_step": state.global_step,
        "epochs_trained": state.epoch,
        "train_runtime_s": next((h["train_runtime"] for h in state.log_history if "train_runtime" in h), None),
    }
