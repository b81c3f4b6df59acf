"""`dsum llm summarize`: summaries of a split from a chat model; a checked submission; the dev score.

Each run claims its own run directory (rundir.py), <general.output_dir>/<general.run_name or
llm_<model>>, `-2`, `-3`, ... when taken, and writes there: `config.yaml` and `environment.json`,
`status.json` (running, then finished or failed), `<split>_submission.csv`, on dev
`dev_predictions.csv` (prediction, references, per-row scores) and `metrics.json` (the score, as
training writes it, so `dsum runs` lists the run with its score), `<split>_llm_report.json` (the
closing report) and `<split>_failures.csv` when rows failed. Run again, it sends only what the
cache (llm.cache) does not hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console

from dsum.util.atomic import atomic_write_text, write_json
from dsum.config import Config
from dsum.data.files import Example, read_examples, reference_map, split_file, write_dev_predictions
from dsum.util.errors import UserError
from dsum.llm.client import ChatRequest, ChatRunner, RunStats
from dsum.llm.prompts import Shot, ShotRetriever, chat_messages, clean_answer
from dsum.metric.rouge import Score, get_tokenizer, score_texts
from dsum.util.progress import progress_console
from dsum.runs.directory import claim_run_dir, mark_status, write_run_files
from dsum.data.submission import write_checked_submission
from dsum.data.text import normalizer_from_config


@dataclass
class SummarizeResult:
    submission: Path
    stats: RunStats  # the closing report: rows answered, failed and from the cache; requests, retries, tokens
    score: Score | None  # dev only


class RowsFailed(UserError):
    """Some rows got no summary: no submission; `stats` is the closing report of the requests made."""

    def __init__(self, stats: RunStats, message: str):
        super().__init__(message)
        self.stats = stats


def summarize_split(
    cfg: Config, split: str, limit: int | None = None, use_cache: bool = True, console: Console | None = None
) -> SummarizeResult:
    split_path = split_file(cfg.data, split)
    console = console or progress_console()
    examples = read_examples(split_path, require_summary=split == "dev")
    if limit is not None:
        examples = examples[:limit]
    runner = ChatRunner(cfg.llm, use_cache=use_cache, console=console)  # a missing key stops us here

    normalize = normalizer_from_config(cfg.data) or (lambda text: text)
    retriever = _retriever(cfg, normalize) if cfg.llm.shots else None
    requests = []
    for ex in examples:
        dialogue = normalize(ex.dialogue)
        shots = retriever.select(ex.fname, dialogue) if retriever else []
        messages = chat_messages(cfg.llm.system_prompt, cfg.llm.user_prompt, dialogue, shots)
        requests.append(ChatRequest(messages, cfg.llm.temperature, cfg.llm.top_p, cfg.llm.max_tokens))

    # Claimed only now: a bad key, file or prompt leaves no run directory behind.
    out_dir = claim_run_dir(cfg, kind="llm")
    try:
        write_run_files(out_dir, cfg, [split_path, *(cfg.data.train if cfg.llm.shots else [])])
        result = _summarize_into(out_dir, cfg, split, examples, requests, runner)
    except BaseException:  # a failed row, a refused key, Ctrl-C: `dsum runs` must not show it running
        mark_status(out_dir, "failed")
        raise
    mark_status(out_dir, "finished")
    return result


def _summarize_into(
    out_dir: Path, cfg: Config, split: str, examples: list[Example], requests: list[ChatRequest], runner: ChatRunner
) -> SummarizeResult:
    results = runner.run(requests, description=f"{split} summaries")
    predictions, failures = {}, []
    for ex, result in zip(examples, results):
        summary = clean_answer(result.text) if result.text is not None else ""
        if result.text is not None and not summary:
            failures.append((ex.fname, "the answer is empty after clean-up (rerun with --no-cache, or change the prompt)"))
        elif result.text is None:
            failures.append((ex.fname, result.error))
        else:
            predictions[ex.fname] = summary

    failures_path = out_dir / f"{split}_failures.csv"
    report = {"split": split, "rows": len(examples), "model": cfg.llm.model, "shots": cfg.llm.shots, **runner.stats.to_dict()}
    if failures:
        atomic_write_text(failures_path, pd.DataFrame(failures, columns=["fname", "error"]).to_csv(index=False))
        write_json(out_dir / f"{split}_llm_report.json", {**report, "failures": len(failures)})
        raise RowsFailed(
            runner.stats,
            f"{len(failures)} of {len(examples)} rows failed (listed in {failures_path}); no submission written. "
            "Run the same command again: answered rows come from the cache and only the failed ones are sent"
        )

    # Checked against the rows asked for: all of the split, or the first --limit rows.
    submission = write_checked_submission(
        out_dir / f"{split}_submission.csv", predictions, [ex.fname for ex in examples], cfg.data.sample_submission
    )
    score = None
    if split == "dev":
        score = score_texts(predictions, reference_map(examples), tokenizer=cfg.metric.tokenizer)
        write_dev_predictions(out_dir / "dev_predictions.csv", examples, predictions, score)
        report.update(score=score.score, rouge1=score.rouge1, rouge2=score.rouge2, rougeL=score.rougeL)
        # The shape of training's metrics.json: `dsum runs` and `dsum runs compare` read "dev".
        dev = {"score": score.score, "rouge1": score.rouge1, "rouge2": score.rouge2, "rougeL": score.rougeL, "rows": score.rows}
        write_json(out_dir / "metrics.json", {"dev": dev, "llm": report})
    write_json(out_dir / f"{split}_llm_report.json", report)
    return SummarizeResult(submission, runner.stats, score)


def _retriever(cfg: Config, normalize) -> ShotRetriever:
    pool = [
        Shot(normalize(ex.dialogue), ex.summaries[0])
        for path in cfg.data.train
        for ex in read_examples(path, require_summary=True)
    ]
    return ShotRetriever(pool, cfg.llm.shots, cfg.llm.shot_selection, get_tokenizer(cfg.metric.tokenizer), cfg.general.seed)

