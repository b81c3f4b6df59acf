"""Summaries for a split with the config's generation settings; submissions and dev scores."""

from __future__ import annotations

from pathlib import Path

from dsum.config import Config
from dsum.data import Example, read_examples, reference_map
from dsum.errors import UserError
from dsum.generate import generate_summaries
from dsum.metric import score_texts
from dsum.precision import resolve_precision
from dsum.submission import write_checked_submission, write_dev_predictions
from dsum.text import normalizer_from_config


def split_path(cfg: Config, split: str) -> Path:
    if split not in ("dev", "test"):
        raise UserError(f"--split must be dev or test, not {split!r}")
    return cfg.data.dev if split == "dev" else cfg.data.test


def summarize(cfg: Config, model, tokenizer, examples: list[Example], normalizer, progress: bool = True) -> dict[str, str]:
    """fname → summary with the config's generation settings, at the precision training used."""
    dialogues = [normalizer(ex.dialogue) if normalizer else ex.dialogue for ex in examples]
    precision = resolve_precision(cfg.training.precision, model.config.model_type, training=False)
    texts = generate_summaries(
        model, tokenizer, dialogues, cfg.generation, cfg.training.eval_batch_size, cfg.model.max_source_length,
        precision=precision, progress=progress,
    )
    return {ex.fname: text for ex, text in zip(examples, texts)}


def checkpoint_folder(path: Path) -> Path:
    """A model folder, or a run directory's checkpoint-best."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"checkpoint folder not found: {path} (point --checkpoint at a run directory or runs/<name>/checkpoint-best)")
    if not (path / "config.json").is_file() and (path / "checkpoint-best" / "config.json").is_file():
        return path / "checkpoint-best"
    return path


def load_for_inference(checkpoint: Path):
    """(model, tokenizer) of a checkpoint folder (or run directory), on the GPU when there is one."""
    import torch

    from dsum.modeling import load_pretrained

    model, tokenizer = load_pretrained(checkpoint_folder(checkpoint))
    if torch.cuda.is_available():
        model = model.cuda()
    return model, tokenizer


def predict_split(cfg: Config, model, tokenizer, split: str, out: Path, normalizer) -> dict:
    """Generate for dev (scored; per-row file) or test (checked submission)."""
    examples = read_examples(split_path(cfg, split), require_summary=split == "dev")
    predictions = summarize(cfg, model, tokenizer, examples, normalizer)
    if split == "test":
        return {"path": str(write_checked_submission(out, predictions, cfg.data.test, cfg.data.sample_submission))}
    score = score_texts(predictions, reference_map(examples), analyser=cfg.metric.tokenizer)
    write_dev_predictions(out, examples, predictions, score)
    return {"path": str(out), **score.to_dict()}


def predict(cfg: Config, checkpoint: Path, split: str, out: Path | None) -> dict:
    """`dsum predict`: a submission-layout file for the split; on dev also the board score."""
    ids_file = split_path(cfg, split)
    checkpoint = checkpoint_folder(checkpoint)
    model, tokenizer = load_for_inference(checkpoint)
    examples = read_examples(ids_file, require_summary=split == "dev")
    predictions = summarize(cfg, model, tokenizer, examples, normalizer_from_config(cfg.data))
    out = out or Path(checkpoint).parent / f"{split}_submission.csv"
    write_checked_submission(out, predictions, ids_file, cfg.data.sample_submission)
    result: dict = {"path": str(out)}
    if split == "dev":
        result.update(score_texts(predictions, reference_map(examples), analyser=cfg.metric.tokenizer).to_dict())
    return result
