"""Run directories as a team sees them: is it still running, which is best, what changed between two.

A run directory (runs/<name>/) already holds everything needed: config.yaml, metrics.json,
train_log.jsonl and status.json. rundir.py creates and writes them; this module only reads, so that
a killed run (no metrics.json, a dead pid) reads "crashed", not "running".
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dsum.config.diff import MISSING, config_diff
from dsum.util.errors import UserError

if TYPE_CHECKING:
    from dsum.metric.bootstrap import Bootstrap, Halves

SORT_KEYS = ("score", "date", "name")


# ---------------------------------------------------------------------------------------------
# Status


def read_status(run_dir: Path) -> dict:
    """status.json as written by rundir.mark_status; {} when absent or unreadable."""
    return read_json(Path(run_dir) / "status.json")


# Every status run_status gives, with what it means: `dsum runs --help` and the README list them from here.
STATUSES = {
    "finished": "trained, scored and recorded",
    "running": "its process is alive on this host",
    "running?": "marked running by another host, which this one cannot ask",
    "failed": "stopped by an error",
    "diverged": "stopped at a non-finite or exploding loss (exit 3); its last finite checkpoints kept",
    "interrupted": "stopped by SIGTERM or Ctrl-C after saving a checkpoint (exit 143 / 130); --resume goes on",
    "out_of_memory": "out of memory at a micro-batch of 1 (exit 4)",
    "save_failed": "a checkpoint could not be written, e.g. a full disk (exit 5); older checkpoints kept",
    "pruned": "a tune trial Optuna stopped early",
    "crashed": "marked running, but its process is gone",
}
INFERRED = ("running?", "crashed")  # told from a "running" mark and the process; never written to status.json


def run_status(run_dir: Path) -> str:
    """One of STATUSES."""
    run_dir = Path(run_dir)
    state = read_status(run_dir)
    if (run_dir / "metrics.json").is_file() or state.get("status") == "finished":
        return "finished"
    if state.get("status") in STATUSES and state["status"] not in ("running", *INFERRED):
        return state["status"]
    if state.get("status") == "running":
        if state.get("host") != socket.gethostname():
            return "running?"
        if _pid_alive(state.get("pid")):
            return "running"
    return "crashed"


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def read_json(path: Path) -> dict:
    """A JSON object file of a run; {} when absent, unreadable or not an object (a run killed mid-write)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ---------------------------------------------------------------------------------------------
# Finding and listing runs


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.yaml").is_file()


def available_runs(output_dir: Path) -> list[str]:
    output_dir = Path(output_dir)
    return sorted(p.name for p in output_dir.iterdir() if is_run_dir(p)) if output_dir.is_dir() else []


def find_run(ref: str | Path, output_dir: Path = Path("runs")) -> Path:
    """A run given as a directory path or as a name under output_dir; else a UserError naming the runs."""
    for candidate in (Path(ref), Path(output_dir) / str(ref)):
        if is_run_dir(candidate):
            return candidate
    names = available_runs(output_dir)
    listed = ", ".join(names) if names else "none"
    raise UserError(f"no run {str(ref)!r} under {output_dir} (available: {listed}); give a run name or a run directory")


def read_config(run_dir: Path) -> dict:
    return yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8")) or {}


def read_metrics(run_dir: Path) -> dict:
    return read_json(Path(run_dir) / "metrics.json")


@dataclass
class RunRow:
    name: str
    path: str
    date: str  # YYYY-MM-DD HH:MM, local time
    kind: str  # train (dsum train) or llm (dsum llm summarize)
    model: str  # llm runs: api:<llm.model>
    learning_rate: float | None  # training settings: None for llm runs
    batch_size: int | None
    epochs: float | None
    score: float | None
    best_epoch: float | None
    status: str


def model_label(config: dict, kind: str = "train") -> str:
    if kind == "llm":
        return f"api:{(config.get('llm') or {}).get('model')}"
    model = config.get("model") or {}
    tiny = model.get("tiny")
    return f"tiny-{tiny.get('architecture', 'bart')}" if tiny else str(model.get("name"))


def run_date(run_dir: Path) -> str:
    """When the run started: status.json's start, else when config.yaml was written (at the start)."""
    started = read_status(run_dir).get("started")
    try:
        return datetime.fromisoformat(started).strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError):  # no status.json (an older run) or a hand-edited one
        pass
    return datetime.fromtimestamp((Path(run_dir) / "config.yaml").stat().st_mtime).strftime("%Y-%m-%d %H:%M")


def run_row(run_dir: Path) -> RunRow:
    config, metrics = read_config(run_dir), read_metrics(run_dir)
    kind = read_status(run_dir).get("kind", "train")
    training = (config.get("training") or {}) if kind == "train" else {}
    return RunRow(
        name=run_dir.name,
        path=str(run_dir),
        date=run_date(run_dir),
        kind=kind,
        model=model_label(config, kind),
        learning_rate=training.get("learning_rate"),
        batch_size=training.get("batch_size"),
        epochs=training.get("epochs"),
        score=(metrics.get("dev") or {}).get("score"),
        best_epoch=metrics.get("best_epoch"),
        status=run_status(run_dir),
    )


def list_runs(output_dir: Path = Path("runs"), sort: str = "score") -> list[RunRow]:
    """Every run under output_dir; sorted by dev score (best first, unscored last), date (newest first) or name."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise UserError(f"no runs directory {output_dir}; train a run first (dsum train -c configs/demo.yaml) or pass --dir")
    if sort not in SORT_KEYS:
        raise UserError(f"--sort {sort!r}: choose one of {', '.join(SORT_KEYS)}")
    rows = [run_row(p) for p in sorted(output_dir.iterdir()) if is_run_dir(p)]
    if sort == "score":
        return sorted(rows, key=lambda r: (r.score is None, -(r.score or 0.0), r.name))
    if sort == "date":
        return sorted(rows, key=lambda r: r.date, reverse=True)
    return sorted(rows, key=lambda r: r.name)


def rows_as_dicts(rows: list[RunRow]) -> list[dict]:
    return [asdict(r) for r in rows]


# ---------------------------------------------------------------------------------------------
# Comparing two runs

# (label, where in metrics.json)
COMPARED_METRICS = (
    ("score", ("dev", "score")),
    ("rouge1", ("dev", "rouge1")),
    ("rouge2", ("dev", "rouge2")),
    ("rougeL", ("dev", "rougeL")),
    ("best_epoch", ("best_epoch",)),
    ("train_runtime_s", ("train_runtime_s",)),
)


def metric_diff(a: dict, b: dict) -> list[tuple[str, Any, Any, float | None]]:
    """(metric, value in a, value in b, b − a) for the compared metrics of two metrics.json."""
    rows = []
    for label, where in COMPARED_METRICS:
        va, vb = _dig(a, where), _dig(b, where)
        numeric = isinstance(va, (int, float)) and isinstance(vb, (int, float))
        rows.append((label, va, vb, vb - va if numeric else None))
    return rows


def _dig(data: dict, where: tuple[str, ...]) -> Any:
    for key in where:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def format_value(value: Any) -> str:
    if value is MISSING:
        return "—"
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "[]"
    return str(value)


def format_metric(name: str, value: Any, signed: bool = False) -> str:
    """Scores with 2 decimals, ROUGE F1 with 4, seconds with 1; `signed` for differences."""
    if not isinstance(value, (int, float)):
        return format_value(value)
    spec = {"score": ".2f", "train_runtime_s": ".1f", "best_epoch": "g"}.get(name, ".4f")
    return format(value, ("+" if signed else "") + spec)


@dataclass
class Comparison:
    a: Path
    b: Path
    config: list[tuple[str, Any, Any]]
    metrics: list[tuple[str, Any, Any, float | None]]
    plot: Path
    bootstrap: Bootstrap | None = None  # B − A over the dev rows both scored; None without both dev_predictions.csv
    halves: dict[str, Halves] | None = None  # run name → its score's spread over random topic halves of dev


def compare_runs(a: str | Path, b: str | Path, output_dir: Path = Path("runs"), out: Path | None = None) -> Comparison:
    """Config diff, metric diff and a PNG of both learning curves (default: <output_dir>/compare_A_vs_B.png)."""
    run_a, run_b = find_run(a, output_dir), find_run(b, output_dir)
    out = Path(out) if out else Path(output_dir) / f"compare_{run_a.name}_vs_{run_b.name}.png"
    plot_curves([run_a, run_b], out)
    bootstrap, halves = noise(run_a, run_b)
    return Comparison(
        a=run_a,
        b=run_b,
        config=config_diff(read_config(run_a), read_config(run_b)),
        metrics=metric_diff(read_metrics(run_a), read_metrics(run_b)),
        plot=out,
        bootstrap=bootstrap,
        halves=halves,
    )


# ---------------------------------------------------------------------------------------------
# Gain or noise: the per-row dev scores of dev_predictions.csv (dsum.metric.bootstrap)


def dev_row_scores(run_dir: Path) -> dict[str, float] | None:
    """fname → board score of the run's dev_predictions.csv; None when the run has none."""
    from dsum.metric.bootstrap import row_scores

    path = Path(run_dir) / "dev_predictions.csv"
    return row_scores(path) if path.is_file() else None


def dev_topics(run_dir: Path, dev: Path | None = None) -> dict[str, str | None]:
    """fname → topic of the run's dev file (its config's data.dev unless given); {} when unreadable."""
    from dsum.metric.bootstrap import topics_of

    try:
        if dev is None:
            from dsum.config import load_config

            # load_config resolves data.dev against the project the run directory sits in.
            dev = load_config(Path(run_dir) / "config.yaml").data.dev
        return topics_of(dev)
    except (UserError, OSError, ValueError):
        return {}


def noise(run_a: Path, run_b: Path | None, dev: Path | None = None) -> tuple[Bootstrap | None, dict[str, Halves]]:
    """The paired bootstrap of B − A over dev rows (None unless both have dev_predictions.csv) and, per
    run, the spread of its dev score over random topic halves (runs without topics or scores left out)."""
    from dsum.metric.bootstrap import paired_bootstrap, topic_halves

    runs = [r for r in (run_a, run_b) if r is not None]
    scores = [dev_row_scores(r) for r in runs]
    bootstrap = None
    if len(runs) == 2 and scores[0] is not None and scores[1] is not None:
        bootstrap = paired_bootstrap(scores[0], scores[1])
    halves: dict[str, Halves] = {}
    for run, rows in zip(runs, scores):
        topics = dev_topics(run, dev) if rows else {}
        if rows and len({topics.get(f) for f in rows} - {None}) >= 2:
            halves[Path(run).name] = topic_halves(rows, topics)
    return bootstrap, halves


def read_log(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "train_log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_curves(run_dirs: list[Path], out: Path) -> Path:
    """Train loss vs step and eval board score vs epoch, one line per run, written as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    figure = Figure(figsize=(11, 4), layout="constrained")
    loss_ax, score_ax = figure.subplots(1, 2)
    for run_dir in run_dirs:
        log = read_log(run_dir)
        train = [e for e in log if "loss" in e]  # Trainer's train lines; eval lines hold eval_loss
        evals = [e for e in log if "eval_board_score" in e]
        loss_ax.plot([e["step"] for e in train], [e["loss"] for e in train], label=run_dir.name)
        score_ax.plot([e["epoch"] for e in evals], [e["eval_board_score"] for e in evals], marker="o", label=run_dir.name)
    loss_ax.set(title="train loss", xlabel="step", ylabel="loss")
    score_ax.set(title="dev board score", xlabel="epoch", ylabel="(R1+R2+RL)/3 × 100")
    for ax in (loss_ax, score_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    figure.savefig(tmp, format="png", dpi=100)
    os.replace(tmp, out)  # atomic: a reader never sees half a PNG
    return out
