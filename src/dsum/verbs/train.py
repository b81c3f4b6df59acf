"""`dsum train`: fine-tune a summarizer from a config, one readable path from the YAML to runs/<name>/.

    train(cfg) = check_training → load_data → claim the run directory → model + encode_data
                 → build_trainer (dsum.verbs.trainer) → finish_run → record_run

Compared with the organiser baseline: labels end in eos (KoBART's tokenizer adds none), every special
token of the data is added, and the kept checkpoint is the best by the board's ROUGE on dev, computed by
the same generator as `dsum predict` at the same precision, so metrics.json and `dsum predict` agree.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import pandas as pd

from dsum.config import Config
from dsum.data.splits import TrainData, load_data
from dsum.model.checks import check_settings
from dsum.model.engine_ct2 import check_engine
from dsum.model.generate import generation_kwargs
from dsum.model.length_control import fit_for_training
from dsum.model.loading import (
    check_lengths,
    check_quantization,
    load_model_and_tokenizer,
    load_model_config,
    set_adapter_base,
    with_model_defaults,
)
from dsum.model.precision import resolve_precision
from dsum.model.tokenization import framing_for, is_decoder_only
from dsum.runs.checkpoints import step_of
from dsum.runs.directory import claim_run_dir, mark_status, write_run_files
from dsum.runs.tracking import Tracker, start_tracker
from dsum.util.atomic import atomic_write_text, write_json
from dsum.util.distributed import init_distributed, is_main_process, world_size
from dsum.util.errors import RunStopped, UserError
from dsum.verbs.faults import guard_training
from dsum.verbs.train_progress import stop_displays
from dsum.verbs.trainer import build_trainer

log = logging.getLogger(__name__)


def shared_run_dir(cfg: Config, resume: bool | Path) -> Path:
    """Every process of a torchrun job must write to the one directory rank 0 claimed."""
    if world_size() == 1:
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


def resume_point(run_dir: Path, resume: bool | Path) -> Path | None:
    """The checkpoint a resumed run continues from: the newest complete one, broken newer ones set aside
    (dsum.runs.checkpoints), chosen by rank 0 for every process; None for a new run."""
    from dsum.runs.checkpoints import resume_checkpoint

    if not resume:
        return None
    if world_size() == 1:
        return resume_checkpoint(run_dir)
    import torch.distributed as dist

    chosen = [resume_checkpoint(run_dir) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(chosen, src=0)
    return chosen[0]


def trim_log(path: Path, step: int) -> None:
    """Drop train_log.jsonl lines logged after `step`, the checkpoint a resume restarts from: the
    resumed run logs those steps again, and curves must not show them twice."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def check_training(cfg: Config):
    """(cfg with the model's defaults, precision): everything a user can get wrong in the config, refused
    before the run directory or the model exists."""
    from dsum.model.quantization import check_optimizer

    model_config = load_model_config(cfg.model)
    cfg = with_model_defaults(cfg, model_config)
    decoder_only = is_decoder_only(model_config)
    check_lengths(cfg.model, cfg.generation.max_new_tokens, model_config)
    check_quantization(cfg.lora)
    check_optimizer(cfg.training.optimizer)  # paged optimizers need CUDA; 4bit/8bit run wherever bitsandbytes does
    check_settings(cfg, model_config)  # LoRA targets and the prompt's chat template
    check_engine(cfg.generation)  # generation.engine's compute type on this device, refused before the model loads
    if cfg.training.packing and not decoder_only:
        raise UserError("training.packing is for decoder-only models: set training.packing=false for a seq2seq model")
    if decoder_only and cfg.generation.length_control != "none":
        raise UserError("generation.length_control=buckets is for seq2seq models: set generation.length_control=none")
    return cfg, resolve_precision(cfg.training.precision, model_config.model_type)


def train(cfg: Config, resume: bool | Path = False, callbacks: Sequence = ()) -> Path:
    """Train, keep the best checkpoint by the board's score, score dev, write a test submission.

    `resume`: True continues this config's newest run that did not finish; a path names the run.
    `callbacks` are extra TrainerCallbacks (dsum tune adds its Optuna pruning callback).
    """
    from dsum.runs.record import resolve_parent
    from dsum.verbs.predict import check_split_inputs

    cfg, precision = check_training(cfg)
    parent_dir = resolve_parent(cfg)
    # The test file and the sample submission are refused now, not after training; each split is read once.
    data = load_data(cfg, test=check_split_inputs(cfg, "test"))

    run_dir = shared_run_dir(cfg, resume)
    main = is_main_process()
    tracker = Tracker(cfg, run_dir, run_dir.name)
    try:
        checkpoint = resume_point(run_dir, resume)  # before the model loads: a broken checkpoint shows now
        model, tokenizer = load_model_and_tokenizer(
            cfg.model, data.special_tokens, data.train_sources + data.train_targets,
            cfg.lora.quantization if cfg.lora else "none", cfg.prompt,
        )
        if cfg.lora is not None:
            model = add_adapters(cfg, model, tokenizer, run_dir, main)
        # max_length=None: the model config's default of 20 would otherwise cap generation (#10032).
        model.generation_config.update(max_length=None, **generation_kwargs(cfg.generation))
        features, truncated = encode_data(cfg, model, tokenizer, data)
        if main:
            write_run_files(run_dir, cfg, [p for p in (*cfg.data.train, cfg.data.dev, cfg.data.test,
                                                       cfg.data.sample_submission) if p is not None])
            if buckets := fit_for_training(model, features.rows, cfg.generation):  # length_control=buckets (seq2seq)
                write_json(run_dir / "length_buckets.json", buckets)
            tracker = start_tracker(cfg, run_dir)
        trainer = build_trainer(cfg, run_dir, model, tokenizer, features, data, precision, tracker, callbacks)
        faults = guard_training(trainer, cfg, run_dir, precision)  # divergence, out of memory, signals, saves
        log_file = run_dir / "train_log.jsonl"
        if main and checkpoint:
            trim_log(log_file, step_of(checkpoint))
        elif main:
            log_file.unlink(missing_ok=True)
        with faults:  # SIGTERM / Ctrl-C: saved and stopped at the next step's end
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        faults.raise_if_interrupted(trainer.state.global_step)
        if not main:
            return run_dir
        metrics = finish_run(cfg, run_dir, trainer, tokenizer, data)
    except BaseException as exc:
        stop_displays()
        # A crash, a pruned trial, a fault survived or Ctrl-C: the tracker and `dsum runs` must not show it as running.
        if main:
            tracker.finish({}, failed=True)
            if isinstance(exc, RunStopped):
                status = exc.status  # diverged, interrupted, save_failed, out_of_memory
            else:
                status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            mark_status(run_dir, status)
        raise
    record_run(cfg, run_dir, {**metrics, "truncated": truncated}, tracker, parent_dir)
    return run_dir


def encode_data(cfg: Config, model, tokenizer, data: TrainData):
    """(the training features, how many texts were cut) as the model's framing encodes them; logged once."""
    m = cfg.model
    framing = framing_for(model.config, tokenizer, cfg.prompt)
    features = framing.encode_examples(data.train_sources, data.train_targets, m.max_source_length, m.max_target_length)
    _, dev_cut = framing.encode_prompts(data.dev_sources, m.max_source_length)
    if is_main_process():
        log.info(
            f"data: {len(data.train)} train / {len(data.dev)} dev examples; "
            f"truncated to {m.max_source_length}/{m.max_target_length} tokens: "
            f"{features.truncated_sources} train dialogues, {features.truncated_targets} train summaries, "
            f"{dev_cut} dev dialogues; {len(data.special_tokens)} special tokens; {framing.describe()}"
        )
    truncated = {
        "train_sources": features.truncated_sources, "train_targets": features.truncated_targets, "dev_sources": dev_cut,
    }
    return features, truncated


def record_run(cfg: Config, run_dir: Path, metrics: dict, tracker: Tracker, parent_dir) -> None:
    """A finished run's metrics.json, tracker summary and record; then it is marked finished."""
    from dsum.runs.record import write_record

    write_json(run_dir / "metrics.json", metrics)
    tracker.log_predictions(pd.read_csv(run_dir / "dev_predictions.csv"))
    if cfg.tracking.log_model:
        tracker.log_model(run_dir / "checkpoint-best")
    tracker.finish({"dev": metrics["dev"], "best_epoch": metrics["best_epoch"], "train_runtime_s": metrics["train_runtime_s"]})
    write_record(run_dir, cfg, metrics, parent_dir)
    mark_status(run_dir, "finished")


def best_epoch(state) -> float | None:
    evals = [h for h in state.log_history if "eval_board_score" in h]
    return max(evals, key=lambda h: h["eval_board_score"])["epoch"] if evals else None


def finish_run(cfg: Config, run_dir: Path, trainer, tokenizer, data: TrainData) -> dict:
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
    dev = predict_split(cfg, model, tokenizer, "dev", run_dir / "dev_predictions.csv", data.normalizer, data.dev)
    log.info(f"dev board score {dev['score']:.2f} (R1 {dev['rouge1']:.4f} R2 {dev['rouge2']:.4f} RL {dev['rougeL']:.4f})")
    submission, problem = None, None
    try:
        test = predict_split(cfg, model, tokenizer, "test", run_dir / "submission.csv", data.normalizer, data.test)
        submission = test["path"]
        log.info(f"submission: {submission}")
    except UserError as exc:
        # The training succeeded: its checkpoint and dev score stand; only the test file could not be made.
        problem = str(exc)
        log.warning(f"training finished, but it wrote no submission: {problem}")
    return {
        "dev": {k: dev[k] for k in ("score", "rouge1", "rouge2", "rougeL", "rows")},
        "engine": {"name": dev["engine"], "compute_type": dev["compute_type"]},  # what generated the dev summaries
        "submission": submission,
        **({"submission_problem": problem} if problem else {}),
        "best_checkpoint": state.best_model_checkpoint,
        "best_epoch": best_epoch(state),
        "global_step": state.global_step,
        "epochs_trained": state.epoch,
        "train_runtime_s": next((h["train_runtime"] for h in state.log_history if "train_runtime" in h), None),
    }
