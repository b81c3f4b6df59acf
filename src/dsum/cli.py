"""The `dsum` command: one thin function per verb; the work happens in the library modules."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from dsum import cli_render as render
from dsum.cli_files import config_app, data_app, submission_app
from dsum.cli_help import tidy_help
from dsum.cli_options import ConfigOption, SetOption, load as _load
from dsum.cli_runs import runs_app
from dsum.util.errors import RunStopped, UserError

app = typer.Typer(
    help="Korean dialogue summarization: data checks, the board's ROUGE, training, submissions.",
    no_args_is_help=True,
    add_completion=True,  # dsum --install-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
)
app.add_typer(config_app, name="config")  # dsum.cli_files: `dsum config`, `dsum data`, `dsum submission`
app.add_typer(data_app, name="data")
app.add_typer(submission_app, name="submission")
llm_app = typer.Typer(help="Summaries from an OpenAI-compatible chat API (Upstage Solar).", no_args_is_help=True)
app.add_typer(llm_app, name="llm")
app.add_typer(runs_app, name="runs")  # dsum.cli_runs: `dsum runs`, `dsum runs compare`
ensemble_app = typer.Typer(help="Combine several models' summaries: MBR choice among candidates.", no_args_is_help=True)
app.add_typer(ensemble_app, name="ensemble")


def show_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        print(f"dsum {version('dsum')}")
        raise typer.Exit()


@app.callback()
def global_options(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=show_version, help="Print dsum's version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Say more: dsum's debug lines; the libraries' info logs, progress bars and warnings."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="The verb's result lines (scores, paths), warnings and errors; no progress, no messages, no library output."),
) -> None:
    if verbose and quiet:
        raise typer.BadParameter("choose one of --verbose and --quiet")
    if verbose or quiet:
        from dsum.util.verbosity import set_verbosity

        set_verbosity("verbose" if verbose else "quiet")


@app.command("score")
def score(
    pred: Path = typer.Option(..., "--pred", help="Predictions: a CSV/JSONL with fname and summary columns."),
    gold: Path = typer.Option(..., "--gold", help="References: `summary` or `summary1..N` columns."),
    analyser: str = typer.Option("mecab", "--analyser", "--tokenizer", help="Morpheme analyser: mecab (default, fast), kiwi or whitespace (--tokenizer: its old name)."),
    per_row: Optional[Path] = typer.Option(None, "--per-row", help="Write per-row scores to this CSV."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: score, rouge1, rouge2, rougeL, rows, unrounded (rouge's F1 has 1e-8 in its denominator: identical texts score 99.9999995, shown as 100.00)."),
) -> None:
    """Score predictions with the leaderboard's ROUGE: morphemes, mean over references, (R1+R2+RL)/3×100.

    Example: dsum score --pred runs/demo/dev_predictions.csv --gold data/sample/dev.csv
    """
    from dsum import score as score_files
    from dsum.util.atomic import atomic_write_text

    result = score_files(pred, gold, analyser)
    if per_row:
        import pandas as pd

        rows = [dict(fname=r.fname, score=r.score, rouge1=r.rouge1, rouge2=r.rouge2, rougeL=r.rougeL) for r in result.per_row]
        atomic_write_text(per_row, pd.DataFrame(rows).to_csv(index=False))
    if as_json:
        print(json.dumps(result.to_dict()))
        return
    print(
        f"score {result.score:.2f}  (ROUGE-1 {result.rouge1:.4f}  ROUGE-2 {result.rouge2:.4f}  "
        f"ROUGE-L {result.rougeL:.4f}; {result.rows} rows, analyser {analyser})"
    )


@app.command("train")
def train(
    config: Path = ConfigOption,
    set_: list[str] = SetOption,
    resume: bool = typer.Option(
        False, "--resume", help="Continue this config's interrupted run (the unfinished one with the newest checkpoint)."
    ),
    resume_dir: Optional[Path] = typer.Option(
        None, "--resume-dir", help="Continue this run directory from its last checkpoint (implies --resume)."
    ),
    parent: Optional[str] = typer.Option(None, "--parent", help="The run this one changes (name under runs/ or a path): record.md shows the config diff."),
    folds: Optional[int] = typer.Option(
        None, "--folds", help="K-fold: K runs under runs/<name>-folds/ (folds stratified by topic), the out-of-fold score, a fold-ensemble submission."
    ),
    folds_include_dev: bool = typer.Option(False, "--folds-include-dev", help="With --folds: dev rows join the folded pool."),
) -> None:
    """Fine-tune a summarizer (seq2seq, or an LLM with LoRA); keep the best checkpoint by the board's score; write a test submission.

    Tracking (W&B, MLflow, TensorBoard) follows the config's tracking: section; every run gets a
    record.md. Several GPUs: torchrun --nproc_per_node 2 -m dsum train -c configs/kobart.yaml

    A new run gets its own directory (runs/<name>, or <name>-2, -3 when taken). After a crash or
    Ctrl-C, --resume continues the run of this config (runs/<name> or <name>-N) that did not finish
    and has the newest checkpoint; --resume-dir runs/<name> names the run to continue.

    --folds K trains K fold runs (a rerun trains only the folds that did not finish), prints the
    out-of-fold score with each fold's, and writes the fold ensemble's submission (ensemble.method).

    Example: dsum train -c configs/demo.yaml --parent demo
    """
    from dsum.verbs.folds import check_fold_flags

    check_fold_flags(folds, folds_include_dev, resume_dir or resume)  # before the training imports (~15 s)
    overrides = [*set_, f"general.parent={parent}"] if parent else set_
    cfg = _load(config, overrides)
    from dsum.verbs.train import train as run_training

    if folds is not None:
        from dsum.verbs.folds import train_folds

        parent = train_folds(cfg, folds, folds_include_dev)
        render.folds(parent)
        print(f"folds: {parent}")
        return
    run_dir = run_training(cfg, resume=resume_dir or resume)
    render.train_result(run_dir)


@app.command("predict")
def predict(
    config: Path = ConfigOption,
    checkpoint: list[Path] = typer.Option(
        ..., "--checkpoint", help="A saved model folder, e.g. runs/<name>/checkpoint-best; repeat it for a logit ensemble of models sharing a tokenizer."
    ),
    split: str = typer.Option("test", "--split", help="test or dev."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output CSV (default: test_submission.csv or dev_predict.csv beside the checkpoint; for a .gguf file, in the current folder)."),
    candidates: Optional[int] = typer.Option(
        None, "--candidates", help="Also write the K best beams per row (K ≤ generation.num_beams) to <out stem>_candidates.csv, for dsum ensemble mbr."
    ),
    samples: Optional[int] = typer.Option(
        None, "--samples", help="Also draw S summaries per row into the candidates file, seeded by general.seed (epsilon sampling on generate(), top-p 0.9 on generation.engine=ctranslate2)."
    ),
    set_: list[str] = SetOption,
) -> None:
    """Generate summaries for a split: test → a checked submission; dev → per-row predictions and the score.

    --candidates K adds <out stem>_candidates.csv (fname,rank,kind,summary; rank 1 = the output's
    summary); --samples S adds S drawn summaries per row to it (kind sample, after the beams).
    --checkpoint A --checkpoint B: one beam search over the models' mean log-probabilities (one tokenizer).

    Example: dsum predict -c configs/demo.yaml --checkpoint runs/<name>/checkpoint-best --split test
    """
    from dsum.verbs.predict import predict as run_predict

    result = run_predict(_load(config, set_), checkpoint if len(checkpoint) > 1 else checkpoint[0], split, out, candidates, samples)
    if "score" in result:
        print(render.dev_score(result))
    print(f"dev predictions: {result['path']}" if split == "dev" else f"submission: {result['path']} (passed the submission check)")
    if "candidates" in result:
        print(f"candidates: {result['candidates']} (dsum ensemble mbr {result['candidates']} --out ...)")


@app.command("average")
def average(
    checkpoints: list[Path] = typer.Argument(..., help="Model folders (or run directories) of one architecture and tokenizer, or LoRA adapters of one base."),
    out: Path = typer.Option(..., "--out", help="New folder for the averaged checkpoint (never overwritten)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="One weight per checkpoint, e.g. 1,1,2 (normalised; default equal)."),
) -> None:
    """Average the weights of checkpoints (the last epochs of a run, the models of K folds) into one.

    Full models: the weighted mean of every tensor. LoRA adapters: peft's weighted merge ("cat"),
    whose delta is the weighted mean of the adapters' deltas. Predict with it as with any checkpoint.

    Example: dsum average runs/fold0 runs/fold1 runs/fold2 --out runs/folds-avg/checkpoint-best
    """
    from dsum.verbs.average import average_checkpoints

    values = None
    if weights:
        try:
            values = [float(w) for w in weights.split(",")]
        except ValueError:
            raise UserError(f"--weights {weights!r}: give numbers separated by commas, one per checkpoint, e.g. 1,1,2") from None
    folder = average_checkpoints(checkpoints, out, values)
    print(f"averaged {len(checkpoints)} checkpoints: {folder}")


@app.command("export")
def export(
    checkpoint: Path = typer.Argument(..., help="A run directory (its checkpoint-best) or a model folder."),
    out: Path = typer.Argument(..., help="New folder for the model (never overwritten)."),
    merge: bool = typer.Option(False, "--merge", help="Merge LoRA adapters into their base and write one full model."),
) -> None:
    """Write a checkpoint as a plain model folder that transformers (or vLLM, TGI, ...) loads with from_pretrained.

    A LoRA run's checkpoint holds only adapters: --merge loads the base in full precision, adds the adapters'
    updates to its weights and saves the merged model with the tokenizer (and its chat template).

    Example: dsum export runs/solar-qlora runs/solar-qlora-merged --merge
    """
    from dsum.verbs.export import export_checkpoint

    print(f"exported: {export_checkpoint(checkpoint, out, merge)}")


@app.command("eda")
def eda(
    config: Path = ConfigOption,
    out: Path = typer.Option(Path("reports/eda"), "--out", help="Folder for report.html, eda.json, lengths.csv and the PNGs."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Processes for the mecab-ko analysis (default: one per CPU but one, at most 8)."),
    set_: list[str] = SetOption,
) -> None:
    """Data report of the config's files: ids, lengths, truncation, topics, tokens, TF-IDF, word clouds.

    Writes one HTML page that opens offline (figures embedded), the PNGs, eda.json with every number
    shown and lengths.csv with the per-example lengths.

    Example: dsum eda -c configs/demo.yaml --out reports/eda
    """
    from dsum.report.morphemes import default_workers
    from dsum.report.build import build_report

    files = build_report(_load(config, set_), out, config_path=config, workers=workers or default_workers())
    print(f"report: {files.html}")
    print(f"numbers: {files.json} (per-example lengths: {files.lengths})")


# --- dsum inspect (issue 26) ----------------------------------------------------------------
@app.command("inspect")
def inspect_outputs(
    run: str = typer.Argument(..., help="A run (name under --dir or directory), a K-fold parent (runs/<name>-folds) or a predictions file."),
    run_b: Optional[str] = typer.Argument(None, help="A second system on the same dev rows: the page compares them (B − A)."),
    dev: Optional[Path] = typer.Option(None, "--dev", help="The dev file of a predictions file (dialogues, references, topics); a run's default: its config's data.dev."),
    out: Optional[Path] = typer.Option(None, "--out", help="The page (.html; inspect.json beside it). Default: <run>/inspect.html, <file>_inspect.html, or inspect_A_vs_B.html beside A."),
    runs_dir: Path = typer.Option(Path("runs"), "--dir", help="The runs directory where run names are looked up."),
    analyser: str = typer.Option("mecab", "--analyser", help="Morpheme analyser of the metric: mecab (the board's), kiwi or whitespace."),
) -> None:
    """One offline HTML page of where a model's dev summaries go wrong, or of two systems side by side.

    The score with its bootstrap interval, scores by bucket, error flags (empty, leftover tokens, cut,
    repetition, speaker tags, PII tokens, other scripts, length outliers), morphemes missed and
    over-produced, a table of every row; a row opens with the board's ROUGE matches highlighted.
    Writes inspect.json with every number shown.

    Example: dsum inspect demo demo-2
    """
    from dsum.report.inspect_build import build_inspect

    render.inspected(build_inspect(run, run_b, dev, out, runs_dir, analyser))
# --- end dsum inspect ------------------------------------------------------------------------


@app.command("tune")
def tune(
    config: Path = ConfigOption,
    set_: list[str] = SetOption,
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes sharing the study's storage (one GPU each when there are several)."),
) -> None:
    """Optuna search over the config's tune.space: pruned, resumable, shared by workers on one storage.

    Every trial is a full training run (or, with tune.mode=decode, a generation pass on a fixed
    checkpoint). Running the command again adds tune.n_trials more trials to the same study.
    Writes runs/<study>/best.yaml, trials.csv and plots/.

    Example: dsum tune -c configs/demo-tune.yaml --workers 2
    """
    from dsum.verbs.tune import require_best, write_results
    from dsum.verbs.tune import tune as run_tune

    cfg = _load(config, set_)
    result = write_results(cfg, run_tune(cfg, workers))
    render.tune_trials(cfg.tune.study_name, result["trials"])
    require_best(cfg, result)
    print(f"best: trial {result['best_number']}, {cfg.tune.objective} {result['best_value']:.4f}, {result['best_params']}")
    print(f"best config: {result['best_yaml']} (run it: dsum train -c {result['best_yaml']})")
    for plot in result["plots"]:
        print(f"plot: {plot}")
    print(f"dashboard: {result['dashboard']}")


@ensemble_app.command("mbr")
def ensemble_mbr(
    preds: list[Path] = typer.Argument(..., help="Prediction files (fname,summary), runs' dev_predictions.csv and/or candidates files (fname,rank,kind,summary) of one split."),
    out: Path = typer.Option(..., "--out", help="The chosen summaries, in submission layout; beside it <stem>_rows.csv (and with --gold <stem>_record.md)."),
    gold: Optional[Path] = typer.Option(None, "--gold", help="References (dev.csv): score each source, MBR and the oracle; bootstrap MBR vs the best source."),
    weights: Optional[str] = typer.Option(None, "--weights", help="R1,R2,RL weights of the metric MBR maximises (default 1,1,1 = the board score), e.g. 1,2,1.5."),
    source_weights: Optional[str] = typer.Option(None, "--source-weights", help="One weight per PRED file (default 1 each): how much agreeing with its candidates counts."),
    analyser: str = typer.Option("mecab", "--analyser", help="Morpheme analyser of the metric: mecab (the board's), kiwi or whitespace."),
    sample: Optional[Path] = typer.Option(None, "--sample", help="sample_submission.csv whose layout OUT takes (default ,fname,summary)."),
) -> None:
    """Per row, the candidate with the highest expected board ROUGE against the other candidates (MBR).

    Ties go to the first source in the order given. A candidates file counts as K sources (<stem>#rank).

    Example: dsum ensemble mbr runs/a/dev_predict.csv runs/b/dev_predict.csv runs/c/dev_predict.csv --out runs/mbr/dev.csv --gold data/dev.csv
    """
    import time

    from dsum.verbs.ensemble import parse_weights, run_mbr

    started = time.perf_counter()
    files = run_mbr(
        preds, out, gold, parse_weights(weights, "--weights"), parse_weights(source_weights, "--source-weights"),
        analyser, sample,
    )
    render.mbr(files, time.perf_counter() - started)


@app.command("doctor")
def doctor(config: Path = ConfigOption, set_: list[str] = SetOption) -> None:
    """Check before a run: GPU vs precision, data files, model reachable, tracker, disk, morpheme analyser.

    ✓ ok, ! warning, ✗ problem; exits 1 when any check fails.

    Example: dsum doctor -c configs/kobart.yaml
    """
    from dsum.verbs.doctor import has_failures, run_checks

    checks = run_checks(_load(config, set_), source=str(config))
    render.doctor(config, checks)
    if has_failures(checks):
        raise typer.Exit(1)


NoCacheOption = typer.Option(False, "--no-cache", help="Send every request again instead of reading llm.cache (answers are still stored).")


@llm_app.command("summarize")
def llm_summarize(
    config: Path = ConfigOption,
    split: str = typer.Option("test", "--split", help="test or dev."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N dialogues of the split."),
    no_cache: bool = NoCacheOption,
    set_: list[str] = SetOption,
) -> None:
    """Summaries from a chat model (zero- or few-shot): a checked submission; on dev also the score.

    The key comes from UPSTAGE_API_KEY (environment or .env). Rate-limited, retried, and cached:
    run it again after a crash or Ctrl-C and only the unanswered dialogues are sent.

    Example: dsum llm summarize -c configs/solar-api.yaml --split dev --limit 20
    """
    from dsum.llm.summarize import RowsFailed, summarize_split

    try:
        result = summarize_split(_load(config, set_), split, limit, use_cache=not no_cache)
    except RowsFailed as exc:
        render.llm_report(exc.stats, split)
        raise
    render.llm_report(result.stats, split)
    if result.score is not None:
        print(render.dev_score(result.score, rows=True))
    print(f"submission: {result.submission} (passed the submission check)")


@app.command("augment")
def augment(
    config: Path = ConfigOption,
    method: str = typer.Option(..., "--method", help="speaker-swap, aeda, turn-noise (local) or llm-paraphrase, back-translation, summary-rewrite (API)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output CSV (default: augment.output or runs/augment/<source>_<method>.csv)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N source rows."),
    no_cache: bool = NoCacheOption,
    set_: list[str] = SetOption,
) -> None:
    """New training rows from old ones; each keeps its source's #...# tokens (else it is rejected).

    Add the output to data.train (e.g. [data/train.csv, runs/augment/train_speaker-swap.csv]).

    Example: dsum augment -c configs/demo.yaml --method speaker-swap
    """
    from dsum.verbs.augment import augment_file

    render.augment(augment_file(_load(config, set_), method, out=out, limit=limit, use_cache=not no_cache))


tidy_help(app)  # plain help text, wrapped once, no Python types (dsum.cli_help)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    from dsum.util.envfile import load_env_file

    tidy_help(app)  # again: a command defined below the call above (each is tidied once)

    load_env_file()  # secrets (UPSTAGE_API_KEY, WANDB_API_KEY) from .env, never from configs
    try:
        app()  # standalone mode: click reports usage errors itself (exit 2) and exits
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except RunStopped as exc:  # a fault the run survived: what was kept and what to try, one line
        print(f"stopped: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
