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


def summarize(
    cfg: Config, model, tokenizer, examples: list[Example], normalizer, progress: bool = True, candidates: int = 1,
    sample: bool = False,
) -> dict:
    """fname → summary with the config's generation settings, at the precision training used.

    candidates=K > 1: fname → the K best beams, best first (the first is the summary of candidates=1).
    sample: K summaries drawn instead (dsum.generate.SAMPLING), seeded with general.seed.
    """
    dialogues = [normalizer(ex.dialogue) if normalizer else ex.dialogue for ex in examples]
    precision = resolve_precision(cfg.training.precision, model.config.model_type, training=False)
    gen = cfg.generation
    if sample:
        import torch

        gen = gen.model_copy(update={"num_beams": 1})
        torch.manual_seed(cfg.general.seed)  # generate draws from torch's generator: same seed, same samples
    texts = generate_summaries(
        model, tokenizer, dialogues, gen, cfg.training.eval_batch_size, cfg.model.max_source_length,
        precision=precision, progress=progress, num_return_sequences=candidates, sampling=sample,
    )
    return {ex.fname: text for ex, text in zip(examples, texts)}


def check_candidates(candidates: int, num_beams: int) -> None:
    """K beams can only come from a beam search at least K wide."""
    if candidates < 1 or candidates > num_beams:
        raise UserError(
            f"--candidates {candidates}: the K best beams need 1 ≤ K ≤ generation.num_beams ({num_beams}); "
            f"lower --candidates or --set generation.num_beams={max(candidates, 1)}"
        )


def write_candidates(path: Path, beams: dict[str, list[str]], samples: dict[str, list[str]] | None = None) -> Path:
    """The candidates file `dsum ensemble mbr` reads: CSV fname,rank,kind,summary, per fname its beams
    (kind beam, best first: rank 1 = the best beam) then its samples (kind sample, in drawing order)."""
    import pandas as pd

    from dsum.atomic import atomic_write_text

    rows = []
    for fname, texts in beams.items():
        listed = [(text, "beam") for text in texts] + [(text, "sample") for text in (samples or {}).get(fname, [])]
        rows += [(fname, rank, kind, text) for rank, (text, kind) in enumerate(listed, start=1)]
    frame = pd.DataFrame(rows, columns=["fname", "rank", "kind", "summary"])
    frame["summary"] = frame["summary"].str.replace(r"[\r\n]+", " ", regex=True)  # one line per candidate
    atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n"))
    return path


def checkpoint_folder(path: Path) -> Path:
    """A model folder, or a run directory's checkpoint-best."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"checkpoint folder not found: {path} (point --checkpoint at a run directory or runs/<name>/checkpoint-best)")
    if not (path / "config.json").is_file() and (path / "checkpoint-best" / "config.json").is_file():
        return path / "checkpoint-best"
    return path


def load_for_inference(checkpoint: Path | list[Path]):
    """(model, tokenizer) of a checkpoint folder (or run directory), on the GPU when there is one.

    Several checkpoints: a LogitEnsemble of them (dsum.generate) and their shared tokenizer.
    """
    import torch

    from dsum.modeling import load_ensemble, load_pretrained

    folders = [checkpoint_folder(path) for path in (checkpoint if isinstance(checkpoint, list) else [checkpoint])]
    model, tokenizer = load_pretrained(folders[0]) if len(folders) == 1 else load_ensemble(folders)
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


def predict(
    cfg: Config, checkpoint: Path | list[Path], split: str, out: Path | None, candidates: int | None = None,
    samples: int | None = None,
) -> dict:
    """`dsum predict`: a submission-layout file for the split; on dev also the board score.

    candidates=K: also the K best beams per row in `<out stem>_candidates.csv` beside the submission
    (write_candidates), for `dsum ensemble mbr`; the submission holds the best beam, as without K.
    samples=S: S sampled summaries per row too (after the beams; seeded with general.seed).
    """
    ids_file = split_path(cfg, split)
    if candidates is not None:
        check_candidates(candidates, cfg.generation.num_beams)
    if samples is not None and samples < 1:
        raise UserError(f"--samples {samples}: give the number of summaries to draw per row, 1 or more")
    checkpoints = checkpoint if isinstance(checkpoint, list) else [checkpoint]  # several: a logit ensemble
    checkpoint = checkpoint_folder(checkpoints[0])
    model, tokenizer = load_for_inference(checkpoints if len(checkpoints) > 1 else checkpoint)
    examples = read_examples(ids_file, require_summary=split == "dev")
    beams = summarize(cfg, model, tokenizer, examples, normalizer_from_config(cfg.data), candidates=candidates or 1)
    predictions = {fname: texts[0] for fname, texts in beams.items()} if candidates and candidates > 1 else beams
    out = out or Path(checkpoint).parent / f"{split}_submission.csv"
    write_checked_submission(out, predictions, ids_file, cfg.data.sample_submission)
    result: dict = {"path": str(out)}
    if candidates is not None or samples is not None:
        listed = beams if candidates and candidates > 1 else {fname: [text] for fname, text in beams.items()}
        drawn = None
        if samples is not None:
            drawn = summarize(cfg, model, tokenizer, examples, normalizer_from_config(cfg.data), candidates=samples, sample=True)
            drawn = {fname: texts if samples > 1 else [texts] for fname, texts in drawn.items()}
        result["candidates"] = str(write_candidates(Path(out).with_name(f"{Path(out).stem}_candidates.csv"), listed, drawn))
    if split == "dev":
        result.update(score_texts(predictions, reference_map(examples), analyser=cfg.metric.tokenizer).to_dict())
    return result
