"""One predict path: a split's summaries with the config's generation settings, and the split's one file.

    check_split_inputs (before any model loads) → load_checkpoint → predict_split → summarize

predict_split is what train's end, `dsum predict`, K-fold and tune's decode mode call: dev → a dev
predictions file (fname, dialogue, prediction, reference(s), per-row scores; a dev file is not a
submission, so it needs no sample submission) and the board score; test → a checked submission.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from dsum.config import Config
from dsum.data.files import Example, read_examples, reference_map
from dsum.util.errors import UserError
from dsum.data.korean import foreign_script_ids, is_korean_data, mostly_not_hangul
from dsum.model.degenerate import report_empty
from dsum.model.engine_ct2 import check_engine
from dsum.model.gguf import is_gguf
from dsum.metric.rouge import score_texts
from dsum.model.loading import check_quantization, checkpoint_folder, load_for_inference, with_model_defaults
from dsum.data.files import write_dev_predictions
from dsum.data.submission import submission_layout, write_checked_submission
from dsum.data.text import normalizer_from_config, special_tokens_for
from dsum.model.tokenization import is_decoder_only

log = logging.getLogger(__name__)


def split_path(cfg: Config, split: str) -> Path:
    from dsum.data.files import split_file

    return split_file(cfg.data, split)


def summarize(
    cfg: Config, model, tokenizer, examples: list[Example], normalizer, progress: bool = True, candidates: int = 1,
    sample: bool = False, report: Path | None = None, stats=None,
) -> dict[str, list[str]]:
    """fname → its summaries (always a list), with the config's generation settings, at the precision training used.

    candidates=K: the K best beams, best first (one: the summary; the first of K is that same summary).
    sample: K summaries drawn instead (dsum.model.generate.SAMPLING), seeded with general.seed.
    generation.korean_only (decoder-only): rows answered mostly not in Hangul are generated again with
    other scripts banned. report: print how many summaries were cut at max_new_tokens and how many are
    mostly not Hangul, listed in this CSV (fname, summary). stats: a GenerationStats to fill (which engine ran).
    """
    from dsum.model.generate import GenerationStats, generate_summaries  # torch: imported once a model is at hand
    from dsum.model.precision import resolve_precision

    dialogues = [normalizer(ex.dialogue) if normalizer else ex.dialogue for ex in examples]
    precision = resolve_precision(cfg.training.precision, model.config.model_type, training=False)
    gen = cfg.generation
    if sample:
        import torch

        gen = gen.model_copy(update={"num_beams": 1})
        torch.manual_seed(cfg.general.seed)  # generate draws from torch's generator: same seed, same samples
    stats = GenerationStats() if stats is None else stats
    run = functools.partial(
        generate_summaries, model=model, tokenizer=tokenizer, gen=gen, batch_size=cfg.training.eval_batch_size,
        max_source_length=cfg.model.max_source_length, precision=precision, progress=progress, prompt=cfg.prompt,
    )
    texts = run(dialogues=dialogues, num_return_sequences=candidates, sampling=sample, stats=stats)
    single = candidates == 1 and not sample
    korean = is_korean_data(cfg.data.language, dialogues)  # the Hangul checks are for Korean data only
    if single and gen.korean_only and is_decoder_only(model.config):
        texts = regenerate_in_korean(run, tokenizer, dialogues, texts) if korean else texts
        if not korean:
            log.warning(f"generation.korean_only is ignored: the data is not Korean (data.language={cfg.data.language})")
    if single and report is not None:
        report_outputs(report, [ex.fname for ex in examples], texts, stats.cut, gen.max_new_tokens, korean)
        report_empty([ex.fname for ex in examples], stats.regenerated, stats.still_empty, gen.max_new_tokens)
    return {ex.fname: [text] if candidates == 1 else list(text) for ex, text in zip(examples, texts)}


def regenerate_in_korean(run, tokenizer, dialogues: list[str], texts: list[str]) -> list[str]:
    """The rows whose summary is mostly not Hangul, generated again with other scripts' tokens banned."""
    rows = [i for i, text in enumerate(texts) if mostly_not_hangul(text)]
    if not rows:
        return texts
    banned = foreign_script_ids(tokenizer, special_tokens_for(dialogues))
    again = run(dialogues=[dialogues[i] for i in rows], suppress_tokens=banned)
    log.info(f"generation.korean_only: {len(rows)} summaries mostly not in Hangul were generated again with other scripts banned")
    texts = list(texts)
    for i, text in zip(rows, again):
        texts[i] = text
    return texts


def report_outputs(
    path: Path, fnames: list[str], texts: list[str], cut: list[int], max_new_tokens: int, korean: bool = True
) -> None:
    """One line on the summaries' health; on Korean data the mostly-not-Hangul ones listed in `path` (removed
    when there are none, and for data in another language)."""
    import pandas as pd

    from dsum.util.atomic import atomic_write_text

    foreign = [(fname, text) for fname, text in zip(fnames, texts) if korean and mostly_not_hangul(text)]
    log.info(
        f"{len(cut)} of {len(texts)} summaries hit max_new_tokens={max_new_tokens} (cut; raise generation.max_new_tokens "
        f"if many are)" + (f"; {len(foreign)} mostly not in Hangul" if korean else "") + (f", listed in {path}" if foreign else "")
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


def non_korean_file(out: Path) -> Path:
    """Where the summaries mostly not in Hangul are listed: beside the predictions file."""
    return Path(out).with_name(f"{Path(out).stem}_non_korean.csv")


def check_split_inputs(cfg: Config, split: str) -> list[Example]:
    """The split's rows, and for test the sample submission's layout: refused before any model loads.

    dev needs references and no sample submission (its file is not a submission); test needs the sample
    when data.sample_submission names one (None: the official layout).
    """
    examples = read_examples(split_path(cfg, split), require_summary=split == "dev")
    if split == "test":
        submission_layout(cfg.data.sample_submission)
    return examples


def load_checkpoint(cfg: Config, checkpoints: list[Path]):
    """(cfg with the model's defaults, model, tokenizer) of checkpoint folders; several: a logit ensemble."""
    check_quantization(cfg.lora)
    model, tokenizer = load_for_inference(checkpoints, cfg.lora.quantization if cfg.lora is not None else "none")
    return with_model_defaults(cfg, model.config), model, tokenizer


def predict_split(
    cfg: Config, model, tokenizer, split: str, out: Path | None, normalizer, examples: list[Example] | None = None,
    candidates: int | None = None, samples: int | None = None, progress: bool = True,
) -> dict:
    """Generate for a split and write its one file at `out`; returns {"path", on dev "score", "rouge1", ...}.

    dev: the dev predictions file (write_dev_predictions) and the board score; test: a checked submission.
    out=None writes nothing (tune's trials). `examples`: check_split_inputs' rows (read here when None).
    candidates=K / samples=S: also `<out stem>_candidates.csv` (write_candidates), for `dsum ensemble mbr`;
    the split's file holds the best beam, as without K.
    """
    examples = check_split_inputs(cfg, split) if examples is None else examples
    k = candidates or 1
    report = non_korean_file(out) if out is not None and k == 1 else None
    from dsum.model.generate import GenerationStats

    stats = GenerationStats()
    beams = summarize(cfg, model, tokenizer, examples, normalizer, progress, candidates=k, report=report, stats=stats)
    predictions = {fname: texts[0] for fname, texts in beams.items()}
    # Which decoding loop made these summaries (metrics.json keeps it: dsum predict on the run uses the same).
    result: dict = {"path": str(out) if out is not None else None, "engine": stats.engine, "compute_type": stats.compute_type}
    if split == "dev":
        score = score_texts(predictions, reference_map(examples), analyser=cfg.metric.tokenizer)
        if out is not None:
            write_dev_predictions(out, examples, predictions, score)
        result.update(score.to_dict())
    elif out is not None:
        write_checked_submission(out, predictions, [ex.fname for ex in examples], cfg.data.sample_submission)
    if out is not None and (candidates is not None or samples is not None):
        drawn = summarize(cfg, model, tokenizer, examples, normalizer, progress, candidates=samples, sample=True) if samples else None
        result["candidates"] = str(write_candidates(Path(out).with_name(f"{Path(out).stem}_candidates.csv"), beams, drawn))
    return result


def run_engine(cfg: Config, folder: Path) -> Config:
    """cfg with the engine and compute type the checkpoint's run scored with (its metrics.json), unless the
    config sets generation.engine itself: dsum predict on a run then reproduces the run's dev score."""
    from dsum.runs.read import read_json

    path = Path(folder).parent / "metrics.json"
    if "engine" in cfg.generation.model_fields_set or not path.is_file():
        return cfg
    made = read_json(path).get("engine") or {}
    if made.get("name") in (None, cfg.generation.engine):
        return cfg
    log.info(f"generation.engine={made['name']} (compute type {made.get('compute_type') or 'auto'}): the engine that "
             f"made {path}'s dev score (set generation.engine to choose another)")
    update = {"engine": made["name"], "compute_type": made.get("compute_type") or "auto"}
    return cfg.model_copy(update={"generation": cfg.generation.model_copy(update=update)})


DEFAULT_OUT = {"dev": "dev_predict.csv", "test": "test_submission.csv"}  # beside the (first) checkpoint


def predict(
    cfg: Config, checkpoint: Path | list[Path], split: str, out: Path | None, candidates: int | None = None,
    samples: int | None = None,
) -> dict:
    """`dsum predict`: the split's file (predict_split) at `out`, default DEFAULT_OUT beside the checkpoint (in the
    current folder for a .gguf file).

    Every input (split, flags, checkpoint folders, the split's file, the sample for test) is checked
    before the model loads. Several checkpoints: one beam search over their mean log-probabilities.
    """
    examples = check_split_inputs(cfg, split)
    if candidates is not None:
        check_candidates(candidates, cfg.generation.num_beams)
    if samples is not None and samples < 1:
        raise UserError(f"--samples {samples}: give the number of summaries to draw per row, 1 or more")
    checkpoints = checkpoint if isinstance(checkpoint, list) else [checkpoint]
    check_engine(cfg.generation, len(checkpoints))
    folders = [checkpoint_folder(path) for path in checkpoints]
    cfg = run_engine(cfg, folders[0])
    if out is None:
        # A .gguf file often lies where nothing may be written (a shared models folder): its file goes here.
        out = Path(DEFAULT_OUT[split]) if is_gguf(folders[0]) else folders[0].parent / DEFAULT_OUT[split]
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; name the output file, e.g. --out {out / DEFAULT_OUT[split]}")
    cfg, model, tokenizer = load_checkpoint(cfg, folders)
    return predict_split(cfg, model, tokenizer, split, out, normalizer_from_config(cfg.data), examples, candidates, samples)
