"""Summaries for a split with the config's generation settings; submissions and dev scores."""

from __future__ import annotations

from pathlib import Path

from dsum.config import Config
from dsum.data import Example, read_examples, reference_map
from dsum.errors import UserError
from dsum.generate import generate_summaries
from dsum.metric import score_texts
from dsum.submission import check_submission, write_dev_predictions, write_submission
from dsum.text import normalizer_from_config


def split_path(cfg: Config, split: str) -> Path:
    if split not in ("dev", "test"):
        raise UserError(f"--split must be dev or test, not {split!r}")
    return cfg.data.dev if split == "dev" else cfg.data.test


def summarize(cfg: Config, model, tokenizer, examples: list[Example], normalizer) -> dict[str, str]:
    dialogues = [normalizer(ex.dialogue) if normalizer else ex.dialogue for ex in examples]
    texts = generate_summaries(
        model, tokenizer, dialogues, cfg.generation, cfg.training.eval_batch_size, cfg.model.max_source_length
    )
    return {ex.fname: text for ex, text in zip(examples, texts)}


def write_checked_submission(cfg: Config, predictions: dict[str, str], ids_file: Path, out: Path) -> Path:
    """Write in the sample's layout and run the submission check; any problem is an error."""
    fnames = [ex.fname for ex in read_examples(ids_file)]
    write_submission(out, predictions, fnames, cfg.data.sample_submission)
    problems = check_submission(out, ids_file, cfg.data.sample_submission)
    if problems:
        raise UserError(f"{out} failed the submission check: " + "; ".join(problems))
    return out


def predict_split(cfg: Config, model, tokenizer, split: str, out: Path, normalizer) -> dict:
    """Generate for dev (scored; per-row file) or test (checked submission)."""
    examples = read_examples(split_path(cfg, split), require_summary=split == "dev")
    predictions = summarize(cfg, model, tokenizer, examples, normalizer)
    if split == "test":
        return {"path": str(write_checked_submission(cfg, predictions, cfg.data.test, out))}
    score = score_texts(predictions, reference_map(examples), tokenizer=cfg.metric.tokenizer)
    write_dev_predictions(out, examples, predictions, score)
    return {"path": str(out), **score.to_dict()}


def predict(cfg: Config, checkpoint: Path, split: str, out: Path | None) -> dict:
    """`dsum predict`: a submission-layout file for the split; on dev also the board score."""
    import torch

    from dsum.modeling import load_pretrained

    ids_file = split_path(cfg, split)
    if not Path(checkpoint).is_dir():
        raise UserError(f"checkpoint folder not found: {checkpoint} (point --checkpoint at runs/<name>/checkpoint-best)")
    model, tokenizer = load_pretrained(checkpoint)
    if torch.cuda.is_available():
        model = model.cuda()
    examples = read_examples(ids_file, require_summary=split == "dev")
    predictions = summarize(cfg, model, tokenizer, examples, normalizer_from_config(cfg.data))
    out = out or Path(checkpoint).parent / f"{split}_submission.csv"
    write_checked_submission(cfg, predictions, ids_file, out)
    result: dict = {"path": str(out)}
    if split == "dev":
        result.update(score_texts(predictions, reference_map(examples), tokenizer=cfg.metric.tokenizer).to_dict())
    return result
