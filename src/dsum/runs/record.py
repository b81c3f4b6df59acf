"""record.md: the team's experiment template, filled in from a run's config and metrics.

One file a teammate reads to know who ran what, why, with which settings, what it scored, where
its tracker page is and what changed from the run it builds on. It is built only from the config
and metrics (which hold no secrets) and checked against the secret environment variables anyway.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from dsum.util.atomic import atomic_write_text
from dsum.config import Config
from dsum.util.errors import UserError
from dsum.config.diff import config_diff
from dsum.runs.read import available_runs, format_value, is_run_dir, read_config
from dsum.util.markdown import markdown_table
from dsum.util.secrets import redact

# Keys that always differ between a run and its parent and say nothing about the change itself.
NOT_A_CHANGE = ("general.parent", "general.notes")


def resolve_parent(cfg: Config) -> Path | None:
    """general.parent as a run directory: a path to one, or a run name under general.output_dir."""
    parent = cfg.general.parent
    if not parent:
        return None
    for candidate in (Path(parent), cfg.general.output_dir / parent):
        if is_run_dir(candidate):
            return candidate
    names = available_runs(cfg.general.output_dir)
    raise UserError(
        f"general.parent={parent!r} is not a run directory nor a run under {cfg.general.output_dir} "
        f"(available: {', '.join(names) if names else 'none'}); fix it or drop general.parent"
    )


def write_record(run_dir: Path, cfg: Config, metrics: dict, parent_dir: Path | None = None) -> Path:
    """Write run_dir/record.md (atomically) and return its path."""
    # Config and metrics hold no secrets; redacting the environment's keys anyway costs nothing.
    text = redact(render_record(Path(run_dir), cfg, metrics, parent_dir))
    path = Path(run_dir) / "record.md"
    atomic_write_text(path, text)
    return path


def render_record(run_dir: Path, cfg: Config, metrics: dict, parent_dir: Path | None = None) -> str:
    sections = [
        f"# {run_dir.name}",
        "",
        f"- **Date:** {run_started(run_dir)}",
        f"- **Author:** {git_author()}",
        f"- **Tracker:** {tracker_line(run_dir)}",
        f"- **Run directory:** `{run_dir}`",
        f"- **Reproduce:** `dsum train -c {run_dir / 'config.yaml'}` at git commit {git_commit_of(run_dir)}",
        "",
        "## Purpose",
        "",
        cfg.general.notes.strip() or "(general.notes is empty: say what this run tests)",
        "",
        "## Settings",
        "",
        table(("setting", "value"), settings_rows(cfg)),
        "",
        "## Results (dev)",
        "",
        table(("metric", "value"), result_rows(metrics)),
        "",
        "## Changes from parent",
        "",
        parent_section(cfg, parent_dir),
        "",
        "## Gain or noise",
        "",
        noise_section(run_dir, cfg, parent_dir),
        "",
        "## Insights / next steps",
        "",
        "",
    ]
    return "\n".join(sections)


def run_started(run_dir: Path) -> str:
    try:
        started = json.loads((run_dir / "status.json").read_text(encoding="utf-8"))["started"]
        return datetime.fromisoformat(started).strftime("%Y-%m-%d %H:%M")
    except (OSError, ValueError, KeyError, TypeError):
        return datetime.now().strftime("%Y-%m-%d %H:%M")


def git_commit_of(run_dir: Path) -> str:
    """The commit environment.json recorded when the run started."""
    try:
        commit = json.loads((run_dir / "environment.json").read_text(encoding="utf-8")).get("git_commit")
    except (OSError, ValueError):
        commit = None
    return f"`{commit}`" if commit else "unknown"


def git_author() -> str:
    """`Name <email>` from git config; "unknown" for what git does not know."""

    def get(key: str) -> str:
        try:
            out = subprocess.run(["git", "config", key], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return out.stdout.strip()

    name, email = get("user.name") or "unknown", get("user.email")
    return f"{name} <{email}>" if email else name


def tracker_line(run_dir: Path) -> str:
    """From tracking.json (written by the tracker at the start of training)."""
    try:
        info = json.loads((run_dir / "tracking.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    backend = info.get("backend") or "none"
    url, where = info.get("url"), info.get("dir")
    if backend == "none":
        return "none (tracking off)"
    if backend == "wandb" and info.get("mode") == "offline":
        return f"W&B offline run, not uploaded yet: `wandb sync {where}`" if where else "W&B offline run"
    if url and url.startswith(("http://", "https://")):
        return f"{backend}: [{url}]({url})"
    if url:  # MLflow and TensorBoard give the command that opens their UI
        return f"{backend}: `{url}`" + (f" (run id {info['run_id']})" if info.get("run_id") else "")
    detail = ", ".join(f"{k} {info[k]}" for k in ("run_id", "dir") if info.get(k))
    return f"{backend} ({detail})" if detail else backend


def settings_rows(cfg: Config) -> list[tuple[str, Any]]:
    m, t, g = cfg.model, cfg.training, cfg.generation
    if m.tiny is not None:
        model = f"tiny {m.tiny.architecture} (d_model {m.tiny.d_model}, {m.tiny.layers} layers, vocab {m.tiny.vocab_size})"
    else:
        model = m.name
    early = f"patience {t.early_stopping_patience}, threshold {t.early_stopping_threshold:g}" if t.early_stopping_patience else "off"
    return [
        ("model", model),
        ("train data", ", ".join(map(str, cfg.data.train))),
        ("dev / test", f"{cfg.data.dev} / {cfg.data.test}"),
        ("data version", cfg.general.data_version),
        ("max source / target tokens", f"{m.max_source_length} / {m.max_target_length}"),
        ("learning rate", t.learning_rate),
        ("batch (train / eval) × accumulation", f"{t.batch_size} / {t.eval_batch_size} × {t.gradient_accumulation_steps}"),
        ("epochs", t.epochs),
        ("warmup ratio", t.warmup_ratio),
        ("weight decay", t.weight_decay),
        ("scheduler", t.scheduler),
        ("precision", t.precision),
        ("label smoothing", t.label_smoothing),
        ("R-Drop alpha", t.rdrop_alpha),
        ("early stopping", early),
        (
            "generation",
            f"beams {g.num_beams}, no_repeat_ngram {g.no_repeat_ngram_size}, "
            f"length_penalty {g.length_penalty:g}, max_new_tokens {g.max_new_tokens}",
        ),
        ("metric tokenizer", cfg.metric.tokenizer),
        ("seed", cfg.general.seed),
    ]


def result_rows(metrics: dict) -> list[tuple[str, Any]]:
    dev = metrics.get("dev") or {}

    def fmt(value: Any, spec: str) -> str:
        return format(value, spec) if isinstance(value, (int, float)) else "—"

    runtime = metrics.get("train_runtime_s")
    return [
        ("board score (R1+R2+RL)/3×100", fmt(dev.get("score"), ".2f")),
        ("ROUGE-1 F1", fmt(dev.get("rouge1"), ".4f")),
        ("ROUGE-2 F1", fmt(dev.get("rouge2"), ".4f")),
        ("ROUGE-L F1", fmt(dev.get("rougeL"), ".4f")),
        ("dev rows", fmt(dev.get("rows"), "d")),
        ("best epoch", fmt(metrics.get("best_epoch"), "g")),
        ("train time", f"{runtime:.0f} s ({runtime / 60:.1f} min)" if isinstance(runtime, (int, float)) else "—"),
        ("global step", fmt(metrics.get("global_step"), "d")),
    ]


def parent_section(cfg: Config, parent_dir: Path | None) -> str:
    if parent_dir is None:
        return "no parent (set general.parent to the run this one changes)"
    diff = [d for d in config_diff(read_config(parent_dir), cfg.model_dump(mode="json")) if d[0] not in NOT_A_CHANGE]
    header = f"Parent: `{parent_dir}`"
    if not diff:
        return f"{header}; same config as the parent"
    return f"{header}\n\n" + table(("key", "parent", "this run"), [(k, format_value(a), format_value(b)) for k, a, b in diff])


def noise_section(run_dir: Path, cfg: Config, parent_dir: Path | None) -> str:
    """The paired bootstrap against the parent over dev rows and the spread over topic halves (dsum.metric.bootstrap)."""
    from dsum.runs.read import noise

    if not (Path(run_dir) / "dev_predictions.csv").is_file():
        return "no dev_predictions.csv: no per-row dev scores to resample"
    with_parent = parent_dir is not None and (Path(parent_dir) / "dev_predictions.csv").is_file()
    bootstrap, halves = noise(parent_dir if with_parent else run_dir, run_dir if with_parent else None, cfg.data.dev)
    lines = []
    if bootstrap is not None:
        lines.append(f"- paired bootstrap over dev rows: {bootstrap.line('parent', 'this run')}")
    else:
        lines.append("- no parent with dev_predictions.csv to compare with")
    mine = halves.get(Path(run_dir).name)
    lines.append(f"- {mine.line()}" if mine else "- topic halves: the dev file has no topics")
    return "\n".join(lines)


def table(header: tuple[str, ...], rows: list[tuple]) -> str:
    """A markdown table of record.md: values that are not text as `dsum runs compare` shows them."""
    return markdown_table(header, rows, format_value)
