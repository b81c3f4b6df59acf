"""Summaries for a split with the config's generation settings; submissions and dev scores."""

from __future__ import annotations

import functools
from pathlib import Path

from dsum.config import Config
from dsum.data.files import Example, read_examples, reference_map
from dsum.util.errors import UserError
from dsum.model.generate import GenerationStats, generate_summaries
from dsum.data.korean import foreign_script_ids, mostly_not_hangul
from dsum.metric.rouge import score_texts
from dsum.model.loading import check_quantization, with_model_defaults
from dsum.model.precision import resolve_precision
from dsum.data.submission import write_checked_submission, write_dev_predictions
from dsum.data.text import normalizer_from_config, special_tokens_for
from dsum.model.tokenization import is_decoder_only


def split_path(cfg: Config, split: str) -> Path:
    if split not in ("dev", "test"):
        raise UserError(f"--split must be dev or test, not {split!r}")
    return cfg.data.dev if split == "dev" else cfg.data.test


def summarize(
    cfg: Config, model, tokenizer, examples: list[Example], normalizer, progress: bool = True, candidates: int = 1,
    sample: bool = False, report: Path | None = None,
) -> dict:
    """fname → summary with the config's generation settings, at the precision training used.

    candidates=K > 1: fname → the K best beams, best first (the first is the summary of candidates=1).
    sample: K summaries drawn instead (dsum.model.generate.SAMPLING), seeded with general.seed.
    generation.korean_only (decoder-only): rows answered mostly not in Hangul are generated again with
    other scripts banned. report: print how many summaries were cut at max_new_tokens and how many are
    mostly not Hangul, listed in this CSV (fname, summary).
    """
    dialogues = [normalizer(ex.dialogue) if normalizer else ex.dialogue for ex in examples]
    precision = resolve_precision(cfg.training.precision, model.config.model_type, training=False)
    gen = cfg.generation
    if sample:
        import torch

        gen = gen.model_copy(update={"num_beams": 1})
        torch.manual_seed(cfg.general.seed)  # generate draws from torch's generator: same seed, same samples
    stats = GenerationStats()
    run = functools.partial(
        generate_summaries, model=model, tokenizer=tokenizer, gen=gen, batch_size=cfg.training.eval_batch_size,
        max_source_length=cfg.model.max_source_length, precision=precision, progress=progress, prompt=cfg.prompt,
    )
    texts = run(dialogues=dialogues, num_return_sequences=candidates, sampling=sample, stats=stats)
    single = candidates == 1 and not sample
    if single and gen.korean_only and is_decoder_only(model.config):
        texts = regenerate_in_korean(run, tokenizer, dialogues, texts)
    if single and report is not None:
        report_outputs(report, [ex.fname for ex in examples], texts, stats.cut, gen.max_new_tokens)
    return {ex.fname: text for ex, text in zip(examples, texts)}


def regenerate_in_korean(run, tokenizer, dialogues: list[str], texts: list[str]) -> list[str]:
    """The rows whose summary is mostly not Hangul, generated again with other scripts' tokens banned."""
    rows = [i for i, text in enumerate(texts) if mostly_not_hangul(text)]
    if not rows:
        return texts
    banned = foreign_script_ids(tokenizer, special_tokens_for(dialogues))
    again = run(dialogues=[dialogues[i] for i in rows], suppress_tokens=banned)
    print(f"generation.korean_only: {len(rows)} summaries mostly not in Hangul were generated again with other scripts banned")
    texts = list(texts)
    for i, text in zip(rows, again):
        texts[i] = text
    return texts


def report_outputs(path: Path, fnames: list[str], texts: list[str], cut: list[int], max_new_tokens: int) -> None:
    """One line on the summaries' health; the mostly-not-Hangul ones listed in `path` (removed when there are none)."""
    import pandas as pd

    from dsum.util.atomic import atomic_write_text

    foreign = [(fname, text) for fname, text in zip(fnames, texts) if mostly_not_hangul(text)]
    print(
        f"{len(cut)} of {len(texts)} summaries hit max_new_tokens={max_new_tokens} (cut; raise generation.max_new_tokens "
        f"if many are); {len(foreign)} mostly not in Hangul" + (f", listed in {path}" if foreign else "")
    )
    if foreign:
        atomic_write_text(path, pd.DataFrame(foreign, columns=["fname", "summary"]).to_csv(index=False, lineterminator="\n"))
    else:
        path.unlink(missing_ok=True)


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

    from dsum.util.atomic import atomic_write_text

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
    if not is_model_folder(path) and is_model_folder(path / "checkpoint-best"):
        return path / "checkpoint-best"
    return path


def is_model_folder(path: Path) -> bool:
    """A full model (config.json) or a LoRA adapter (adapter_config.json)."""
    return (path / "config.json").is_file() or (path / "adapter_config.json").is_file()


def quantization(cfg: Config) -> str:
    """How a LoRA checkpoint's base is loaded: as training loaded it (lora.quantization)."""
    return cfg.lora.quantization if cfg.lora is not None else "none"


def load_for_inference(checkpoint: Path | list[Path], quantization: str = "none"):
    """(model, tokenizer) of a checkpoint folder (or run directory), on the GPU when there is one.

    Several checkpoints: a LogitEnsemble of them (dsum.model.generate) and their shared tokenizer.
    A LoRA checkpoint loads its base (quantized as lora.quantization says) with the adapter on top.
    """
    import torch

    from dsum.model.loading import load_ensemble, load_pretrained

    folders = [checkpoint_folder(path) for path in (checkpoint if isinstance(checkpoint, list) else [checkpoint])]
    model, tokenizer = load_pretrained(folders[0], quantization) if len(folders) == 1 else load_ensemble(folders)
    if torch.cuda.is_available() and quantization == "none":
        model = model.cuda()  # a quantized model is placed on the GPU as it loads
    return model, tokenizer


def non_korean_file(out: Path) -> Path:
    """Where the summaries mostly not in Hangul are listed: beside the predictions file."""
    return Path(out).with_name(f"{Path(out).stem}_non_korean.csv")


def predict_split(cfg: Config, model, tokenizer, split: str, out: Path, normalizer) -> dict:
    """Generate for dev (scored; per-row file) or test (checked submission)."""
    examples = read_examples(split_path(cfg, split), require_summary=split == "dev")
    predictions = summarize(cfg, model, tokenizer, examples, normalizer, report=non_korean_file(out))
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
    check_quantization(cfg.lora)
    model, tokenizer = load_for_inference(checkpoints if len(checkpoints) > 1 else checkpoint, quantization(cfg))
    cfg = with_model_defaults(cfg, model.config)
    examples = read_examples(ids_file, require_summary=split == "dev")
    out = out or Path(checkpoint).parent / f"{split}_submission.csv"
    beams = summarize(
        cfg, model, tokenizer, examples, normalizer_from_config(cfg.data), candidates=candidates or 1,
        report=non_korean_file(out) if not candidates or candidates == 1 else None,
    )
    predictions = {fname: texts[0] for fname, texts in beams.items()} if candidates and candidates > 1 else beams
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
