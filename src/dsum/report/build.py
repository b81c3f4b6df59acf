"""Builds the data report of a config's files: numbers (JSON), figures (PNG) and one HTML page.

The HTML is rendered from the JSON alone, so every number on the page is in the JSON. Figures are
written beside the page and also embedded in it (base64), so the page opens offline on its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from dsum.util.atomic import atomic_write_bytes, atomic_write_text, write_json
from dsum.config import Config
from dsum.data.files import read_predictions
from dsum.report import morphemes, stats
from dsum.report.html import render_html
from dsum.report.plots import Plotter, korean_font_path
from dsum.report.tokens import load_tokenizer, token_lengths
from dsum.util.progress import progress_steps
from dsum.data.text import normalizer_from_config

TOP_TOPICS = 20  # topics listed per split
TOP_WORDS = 30  # most frequent content words listed beside each word cloud
CLEANUP_EXAMPLES = 5


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    json: Path
    lengths: Path
    images: tuple[Path, ...]


def build_report(cfg: Config, out: Path, config_path: Path | None = None, workers: int = 1) -> ReportFiles:
    """Reads the config's train/dev/test (and sample submission), writes `out`/report.html,
    eda.json, lengths.csv and the PNGs; returns their paths. `workers` > 1 runs the mecab-ko
    analysis in that many worker processes (see dsum.report.morphemes.start_pool)."""
    started = time.perf_counter()
    font = korean_font_path()  # fails early, before the slow steps, when the font is missing
    # Read before the progress display starts: a missing file or column is one line on stderr.
    splits = [stats.read_split("train", cfg.data.train), stats.read_split("dev", [cfg.data.dev]),
              stats.read_split("test", [cfg.data.test])]
    submission = None
    if cfg.data.sample_submission is not None and Path(cfg.data.sample_submission).is_file():
        submission = list(read_predictions(cfg.data.sample_submission))
    train, dev = splits[0], splits[1]
    total = sum(len(s) * (1 + (s.summaries is not None)) for s in splits)  # dialogues + summaries
    timings: dict[str, float] = {"read data": round(time.perf_counter() - started, 3)}
    with progress_steps(timings) as step:
        with step("clean-up rules", total) as advance:
            cleanup = _apply_cleanup(cfg, splits, advance)

        sources = {(s.name, column): texts for s in splits
                   for column, texts in (("dialogue", s.dialogues), ("summary", s.summaries)) if texts is not None}
        # mecab-ko is the slowest step: worker processes analyse while this one builds the tokenizer.
        pool = morphemes.start_pool(workers, total)
        try:
            jobs = morphemes.submit(pool, [text for texts in sources.values() for text in texts])
            with step("tokenizer"):
                tokenizer, tokenizer_info = load_tokenizer(cfg.model, [*train.dialogues, *(train.summaries or ())],
                                                           dev.dialogues, cfg.prompt)
            lengths = {s.name: _measures(s) for s in splits}
            if tokenizer is not None:
                with step("token lengths", total) as advance:
                    _add_token_lengths(tokenizer, splits, lengths, advance)
            with step("morphemes (mecab-ko)", total) as advance:
                flat = morphemes.collect(jobs, advance)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        words: dict[tuple[str, str], list[list[str]]] = {}
        for key, texts in sources.items():
            words[key], flat = flat[: len(texts)], flat[len(texts) :]
        frequencies = {column: stats.word_frequencies([row for (_, c), rows in words.items() if c == column for row in rows])
                       for column in ("dialogue", "summary")}

        with step("numbers"):
            report = _numbers(cfg, splits, submission, lengths, cleanup, tokenizer_info, words, frequencies)
            report["config"] = str(config_path) if config_path else None

        with step("TF-IDF by topic"):
            report["tfidf"] = _tfidf(train, dev, words)

        plotter = Plotter(font)
        report["font"] = {"path": str(font), "family": plotter.family}
        with step("figures", 7) as advance:
            images = _figures(plotter, cfg, splits, lengths, report, frequencies, advance)
        report["images"] = {key: name for key, (name, _) in images.items()}

        with step("write files"):
            out = Path(out)
            for name, data in images.values():
                atomic_write_bytes(out / name, data)
            lengths_path = out / "lengths.csv"
            atomic_write_text(lengths_path, _lengths_csv(splits, lengths))
            report["timings"] = timings
            report["seconds"] = round(time.perf_counter() - started, 3)
            json_path, html_path = out / "eda.json", out / "report.html"
            write_json(json_path, report)
            atomic_write_text(html_path, render_html(report, dict(images.values())))
    image_paths = tuple(out / name for name, _ in images.values())
    return ReportFiles(html_path, json_path, lengths_path, image_paths)


def _add_token_lengths(tokenizer, splits: list[stats.Split], lengths: dict, advance) -> None:
    for s in splits:
        lengths[s.name]["dialogue"]["tokens"] = token_lengths(tokenizer, s.dialogues, advance=advance)
        if s.summaries is not None:
            rows = lengths[s.name]["summary_rows"]
            summaries = [s.summaries[i] for i in rows]
            lengths[s.name]["summary"]["tokens"] = token_lengths(tokenizer, summaries, target=True, advance=advance)
            advance(len(s) - len(rows))  # rows without a summary


def _tfidf(train: stats.Split, dev: stats.Split, words: dict) -> dict | None:
    """TF-IDF by topic over train (dev when train has no topics); a row's words are those of its
    dialogue and its summary."""
    split = next((s for s in (train, dev) if s.topics is not None), None)
    if split is None:
        return None
    summaries = words.get((split.name, "summary"), [[]] * len(split))
    documents = [d + s for d, s in zip(words[split.name, "dialogue"], summaries)]
    return {"split": split.name, **stats.tfidf_by_topic(documents, split.topics, TOP_TOPICS)}


# ---------------------------------------------------------------------------------------------


def _apply_cleanup(cfg: Config, splits: list[stats.Split], advance) -> dict:
    """Counts what the clean-up rules change (per split, column and rule) and keeps examples; the
    splits get the cleaned texts when the config cleans (the text the model sees)."""
    normalizer = normalizer_from_config(cfg.data, force=True)
    counts: dict[str, dict[str, dict[str, int]]] = {}
    candidates = []  # (split, column, fname, before, after) for each changed text

    def clean(s: stats.Split, column: str, texts: list[str]) -> list[str]:
        cleaned, counts[s.name][column] = normalizer.apply_with_counts(texts)
        advance(len(texts))
        candidates.extend((s.name, column, s.fnames[i], texts[i], cleaned[i])
                          for i in range(len(texts)) if cleaned[i] != texts[i])
        return cleaned if cfg.data.clean else texts

    for s in splits:
        counts[s.name] = {}
        s.dialogues = clean(s, "dialogue", s.dialogues)
        if s.summaries is not None:
            s.summaries = clean(s, "summary", s.summaries)
    return {
        "applied": cfg.data.clean,
        "rules": [rule.name for rule in normalizer.rules],
        "counts": counts,
        "changed_texts": len(candidates),
        "examples": _cleanup_examples(normalizer, candidates, counts),
    }


def _cleanup_examples(normalizer, candidates: list[tuple], counts: dict) -> list[dict]:
    """Up to five changed texts: first one for each rule that changed anything, then the next ones."""
    active = {rule for by_column in counts.values() for by_rule in by_column.values() for rule, n in by_rule.items() if n}
    chosen: list[int] = []
    covered: set[str] = set()
    for k, (_, _, _, before, _) in enumerate(candidates):
        if len(chosen) == CLEANUP_EXAMPLES or covered >= active:
            break
        rules = {r for r, n in normalizer.apply_with_counts([before])[1].items() if n}
        if not rules <= covered:
            covered |= rules
            chosen.append(k)
    chosen += [k for k in range(len(candidates)) if k not in chosen][: CLEANUP_EXAMPLES - len(chosen)]
    examples = []
    for k in chosen:
        split, column, fname, before, after = candidates[k]
        rules = [r for r, n in normalizer.apply_with_counts([before])[1].items() if n]
        examples.append(_example(split, column, fname, rules, before, after))
    return examples


def _example(split: str, column: str, fname: str, rules: list[str], before: str, after: str) -> dict:
    """The stretch of text around the first change, before and after."""
    first = next((i for i, (a, b) in enumerate(zip(before, after)) if a != b), min(len(before), len(after)))
    start = max(first - 40, 0)
    return {
        "split": split, "column": column, "fname": fname, "rules": rules,
        "before": before[start : first + 80], "after": after[start : first + 80],
        "clipped_start": start > 0,
    }


def _measures(s: stats.Split) -> dict:
    """Per-row lengths of a split (tokens are filled in later, when a tokenizer is available)."""
    dialogue = {
        "chars": [len(d) for d in s.dialogues],
        "turns": [stats.turn_count(d) for d in s.dialogues],
        "speakers": [stats.speaker_count(d) for d in s.dialogues],
        "tokens": None,
    }
    if s.summaries is None:
        return {"dialogue": dialogue, "summary": None, "summary_rows": [], "compression": None}
    rows = [i for i, summary in enumerate(s.summaries) if summary.strip()]  # rows with a summary
    summary = {"chars": [len(s.summaries[i]) for i in rows], "tokens": None}
    compression = [len(s.summaries[i]) / len(s.dialogues[i]) for i in rows if s.dialogues[i]]
    return {"dialogue": dialogue, "summary": summary, "summary_rows": rows, "compression": compression}


def _numbers(cfg: Config, splits, submission, lengths, cleanup, tokenizer_info, words, frequencies) -> dict:
    m = cfg.model
    report: dict = {
        "title": "dsum data report",
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": {s.name: [str(p) for p in s.paths] for s in splits},
        "sample_submission": str(cfg.data.sample_submission) if submission is not None else None,
        "tokenizer": tokenizer_info.to_dict(),
        "max_lengths": {"source": m.max_source_length, "target": m.max_target_length},
        "sizes": {},
        "lengths": {},
        "truncation": {},
        "special_tokens": {},
        "topics": {"counts": {}, "overlap": stats.topic_overlap(splits)},
        "cleanup": cleanup,
    }
    for s in splits:
        report["sizes"][s.name] = {
            **stats.id_report(s.fnames),
            "with_summary": len(lengths[s.name]["summary_rows"]),
            "with_topic": sum(1 for t in s.topics or () if t.strip()),
        }
        measures = lengths[s.name]
        report["lengths"][s.name] = {
            "dialogue": {k: stats.describe(v) if v is not None else None for k, v in measures["dialogue"].items()},
            "summary": None if measures["summary"] is None else
            {k: stats.describe(v) if v is not None else None for k, v in measures["summary"].items()},
            "compression": stats.describe(measures["compression"]) if measures["compression"] else None,
        }
        dialogue_tokens = measures["dialogue"]["tokens"]
        summary_tokens = measures["summary"]["tokens"] if measures["summary"] else None
        report["truncation"][s.name] = {
            "dialogue": stats.truncation(dialogue_tokens, m.max_source_length) if dialogue_tokens else None,
            "summary": stats.truncation(summary_tokens, m.max_target_length) if summary_tokens else None,
        }
        report["special_tokens"][s.name] = stats.special_token_counts(s)
        if s.topics is not None:
            counts = stats.topic_counts(s)
            report["topics"]["counts"][s.name] = {
                "rows_with_topic": sum(counts.values()),
                "unique": len(counts),
                "top": [[t, n] for t, n in sorted(counts.items(), key=lambda p: (-p[1], p[0]))[:TOP_TOPICS]],
            }
    report["topics"]["without_topic"] = [s.name for s in splits if s.topics is None]
    report["shared_ids"] = stats.shared_ids(splits)
    test = next(s for s in splits if s.name == "test")
    report["submission_ids"] = stats.submission_ids(test.fnames, submission) if submission is not None else None
    report["shift"] = _shift(lengths)
    report["word_clouds"] = {}
    for column in ("dialogue", "summary"):
        report["word_clouds"][column] = {
            "texts": sum(len(words[s.name, column]) for s in splits if (s.name, column) in words),
            "splits": [s.name for s in splits if (s.name, column) in words],
            "top_words": [[w, n] for w, n in frequencies[column].most_common(TOP_WORDS)],
        }
    return report


def _shift(lengths: dict) -> list[dict]:
    """KS tests of every length measure, train against dev and train against test."""
    rows = []
    for other in ("dev", "test"):
        for text in ("dialogue", "summary"):
            a, b = lengths["train"][text], lengths[other][text]
            if a is None or b is None:
                continue
            for measure, values in a.items():
                if values and b.get(measure):
                    rows.append({"a": "train", "b": other, "text": text, "measure": measure,
                                 "n_a": len(values), "n_b": len(b[measure]), **stats.ks_shift(values, b[measure])})
    return rows


def _figures(plotter: Plotter, cfg: Config, splits, lengths, report, frequencies, advance) -> dict[str, tuple[str, bytes]]:
    """{key: (file name, PNG bytes)} for every figure the data allows."""
    images: dict[str, tuple[str, bytes]] = {}
    names = [s.name for s in splits]

    def by_split(text: str, measure: str) -> dict:
        return {n: lengths[n][text][measure] for n in names
                if lengths[n][text] is not None and lengths[n][text][measure]}

    panels = [("글자 수 (characters)", by_split("dialogue", "chars"), False),
              ("발화 수 (turns)", by_split("dialogue", "turns"), True),
              ("화자 수 (speakers)", by_split("dialogue", "speakers"), True)]
    if by_split("dialogue", "tokens"):
        panels.append(("토큰 수 (tokens)", by_split("dialogue", "tokens"), False))
    images["dialogue_lengths"] = ("dialogue_lengths.png", plotter.histograms("대화 길이 분포 (dialogue lengths)", panels))
    advance()

    panels = []
    if by_split("summary", "chars"):
        panels.append(("글자 수 (characters)", by_split("summary", "chars"), False))
    if by_split("summary", "tokens"):
        panels.append(("토큰 수 (tokens)", by_split("summary", "tokens"), False))
    compression = {n: lengths[n]["compression"] for n in names if lengths[n]["compression"]}
    if compression:
        panels.append(("요약/대화 글자 비율 (compression)", compression, False))
    if panels:
        images["summary_lengths"] = ("summary_lengths.png", plotter.histograms("요약 길이 분포 (summary lengths)", panels))
    advance()

    if by_split("dialogue", "tokens"):
        panels = [("대화 토큰 수 (dialogue tokens)", by_split("dialogue", "tokens"), cfg.model.max_source_length)]
        if by_split("summary", "tokens"):
            panels.append(("요약 토큰 수 (summary tokens)", by_split("summary", "tokens"), cfg.model.max_target_length))
        images["truncation"] = ("truncation.png", plotter.cumulative("최대 길이에서 잘리는 비율 (truncation)", panels))
    advance()

    if by_split("dialogue", "tokens"):
        first = ("대화 토큰 수 (dialogue tokens)", by_split("dialogue", "tokens"), None)
    else:
        first = ("대화 글자 수 (dialogue characters)", by_split("dialogue", "chars"), None)
    panels = [first, ("대화 발화 수 (dialogue turns)", by_split("dialogue", "turns"), None)]
    images["shift"] = ("shift.png", plotter.cumulative("분할 간 길이 차이 (length shift between splits)", panels))
    advance()

    topic_counts = {n: [tuple(p) for p in c["top"]] for n, c in report["topics"]["counts"].items() if c["top"]}
    if topic_counts:
        images["topics"] = ("topics.png", plotter.topic_bars(topic_counts))
    advance()

    token_counts = {n: report["special_tokens"][n]["dialogue"] for n in names}
    if any(token_counts.values()):
        rows = {n: report["sizes"][n]["rows"] for n in names}
        images["special_tokens"] = ("special_tokens.png", plotter.token_bars(token_counts, rows))
    advance()

    for column in ("dialogue", "summary"):
        if frequencies[column]:
            images[f"wordcloud_{column}"] = (f"wordcloud_{column}.png", plotter.word_cloud(frequencies[column]))
    advance()
    return images


def _lengths_csv(splits, lengths) -> str:
    """One row per example: the lengths behind every distribution of the report."""
    import pandas as pd

    frames = []
    for s in splits:
        m = lengths[s.name]
        frame = pd.DataFrame({
            "split": s.name,
            "fname": s.fnames,
            "dialogue_chars": m["dialogue"]["chars"],
            "dialogue_turns": m["dialogue"]["turns"],
            "dialogue_speakers": m["dialogue"]["speakers"],
            "dialogue_tokens": pd.array(m["dialogue"]["tokens"] or [None] * len(s), dtype="Int64"),
        })
        summary_chars = pd.array([None] * len(s), dtype="Int64")
        summary_tokens = pd.array([None] * len(s), dtype="Int64")
        if m["summary"] is not None:
            for k, i in enumerate(m["summary_rows"]):
                summary_chars[i] = m["summary"]["chars"][k]
                if m["summary"]["tokens"]:
                    summary_tokens[i] = m["summary"]["tokens"][k]
        frame["summary_chars"] = summary_chars
        frame["summary_tokens"] = summary_tokens
        frames.append(frame)
    return pd.concat(frames, ignore_index=True).to_csv(index=False, lineterminator="\n")


