"""Experiment trackers behind one small interface: W&B, MLflow, TensorBoard, or none.

train.py talks to a `Tracker`: `log(metrics, step)` during training, then `log_predictions`,
`log_model` and `finish` at the end. Each backend records the resolved config with secrets
removed and writes `tracking.json` into the run directory (backend, link, run id, mode) so the
run record and `dsum runs` can point at it. Only rank 0 of a torchrun job tracks.

`tracking.log_data` also logs the run's data files at the start (`log_data`): on W&B one dataset
artifact `data-<data_version>` per data line, whose versions v0, v1, ... are the distinct contents
seen under that label (W&B compares the content digest with the latest version and makes no new
version when it is the same); on MLflow the files under the run's `data/` artifacts plus their sha256
as params (MLflow has no content store to share: each run keeps its copy). tracking.json gets the
artifact name, version (online W&B), digest and every file's sha256 under "data".
"""

from __future__ import annotations

import contextlib
import logging
import netrc
import os
import re
import sys
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from dsum.config import Config, TrackingConfig
from dsum.config.diff import flatten
from dsum.data.files import file_sha256
from dsum.util.atomic import write_json
from dsum.util.errors import UserError
from dsum.util.secrets import redact

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def metric_name(key: str) -> str:
    """Trainer log keys → tracker names: eval_board_score → eval/board_score, loss → train/loss."""
    if key.startswith("eval_"):
        return f"eval/{key[len('eval_'):]}"
    return key if "/" in key else f"train/{key}"


def data_files(cfg: Config) -> dict[str, Path]:
    """The run's data files that exist, by their name in the tracker: `<role>/<file name>`.

    Roles: train, dev, test, sample_submission; a second training file of an already used name goes
    under train-2/, train-3/, ... Names carry no folder of this machine, so the same data anywhere
    gives the same names and the same W&B digest.
    """
    d = cfg.data
    listed = [*(("train", p) for p in dict.fromkeys(d.train)), ("dev", d.dev), ("test", d.test), ("sample_submission", d.sample_submission)]
    files: dict[str, Path] = {}
    for role, path in listed:
        if path is None or not path.is_file():
            continue
        folder, n = role, 1
        while f"{folder}/{path.name}" in files:
            n += 1
            folder = f"{role}-{n}"
        files[f"{folder}/{path.name}"] = path
    return files


def data_artifact_name(data_version: str) -> str:
    """`data-<general.data_version>`, in the letters a W&B artifact name allows."""
    return "data-" + re.sub(r"[^A-Za-z0-9_.-]", "-", data_version)


class Tracker:
    """No tracking: every call is a no-op, so train.py never branches on the backend."""

    backend = "none"

    def __init__(self, cfg: Config, run_dir: Path, run_name: str):
        self.cfg, self.run_dir, self.run_name = cfg, run_dir, run_name
        self.config = redact(cfg.model_dump(mode="json"))

    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_predictions(self, predictions: pd.DataFrame) -> None:
        pass

    def log_model(self, model_dir: Path) -> None:
        pass

    def log_data(self, files: dict[str, Path]) -> dict[str, Any] | None:
        """Log the data files (name → path, see `data_files`); what tracking.json records of them."""
        return None

    def finish(self, summary: dict[str, Any], failed: bool = False) -> None:
        pass

    def abandon(self) -> None:
        """Let go of a tracker whose server stopped answering (BestEffort), without waiting on it."""

    def info(self) -> dict[str, Any]:
        return {"backend": self.backend, "url": None, "run_id": None, "mode": None, "dir": None}


class WandbTracker(Tracker):
    backend = "wandb"

    def __init__(self, cfg: Config, run_dir: Path, run_name: str):
        super().__init__(cfg, run_dir, run_name)
        import wandb

        t = cfg.tracking
        self.mode = wandb_mode(t)
        if self.mode == "offline":
            log.info(f"W&B: offline run (mode {t.mode}, not logged in or WANDB_MODE=offline); upload it later with `wandb sync {run_dir}/wandb/offline-run-*`")
        # W&B records the command line among the run's metadata; a key pasted into --set must not go with it.
        saved_argv = sys.argv[:]
        sys.argv[:] = redact(saved_argv)
        try:
            self.run = self._init(wandb, cfg, run_dir, run_name)
        finally:
            sys.argv[:] = saved_argv
        self.run.define_metric("eval/board_score", summary="max")

    def _init(self, wandb, cfg: Config, run_dir: Path, run_name: str):
        t = cfg.tracking
        return wandb.init(
            project=t.project,
            entity=t.entity,
            group=t.group,
            tags=t.tags or None,
            notes=redact(t.notes or cfg.general.notes) or None,
            name=run_name,
            config=self.config,
            dir=str(run_dir),
            mode=self.mode,
            reinit="finish_previous",  # a tuning study starts one run per trial in this process
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log({metric_name(k): v for k, v in metrics.items()}, step=step)

    def log_predictions(self, predictions: pd.DataFrame) -> None:
        import wandb

        self.run.log({"dev/predictions": wandb.Table(dataframe=predictions)})

    def log_model(self, model_dir: Path) -> None:
        import wandb

        artifact = wandb.Artifact(f"{self.run_name}-model", type="model", metadata={"run": self.run_name})
        artifact.add_dir(str(model_dir))
        self.run.log_artifact(artifact, aliases=["best"])

    def log_data(self, files: dict[str, Path]) -> dict[str, Any]:
        import wandb

        name = data_artifact_name(self.cfg.general.data_version)
        sha256 = {entry: file_sha256(path) for entry, path in files.items()}
        # The metadata is not part of the digest (W&B hashes entry names and contents only): the
        # sha256s are there to match environment.json, not to tell versions apart.
        artifact = wandb.Artifact(name, type="dataset", metadata={"sha256": sha256})
        for entry, path in files.items():
            artifact.add_file(str(path), name=entry)
        if self.mode == "online":
            # An input of this run (its page lists the data it used); waits until W&B has committed
            # the upload, or found the same digest as the latest version, so the version is known.
            self.run.use_artifact(artifact)
        else:
            # use_artifact is refused offline; `wandb sync` uploads it with the same digest check.
            self.run.log_artifact(artifact)
        version = None if artifact.is_draft() else artifact.version
        return {"artifact": name, "type": "dataset", "version": version, "digest": artifact.digest, "sha256": sha256}

    def finish(self, summary: dict[str, Any], failed: bool = False) -> None:
        self.run.summary.update(redact(summary))
        self.run.finish(exit_code=1 if failed else 0)

    def info(self) -> dict[str, Any]:
        url = self.run.url if self.mode == "online" else None
        return {"backend": self.backend, "url": url, "run_id": self.run.id, "mode": self.mode, "dir": self.run.dir and str(Path(self.run.dir).parent)}


def wandb_mode(t: TrackingConfig) -> str:
    """auto: WANDB_MODE when set, else online when logged in (key or ~/.netrc), else offline."""
    if t.mode != "auto":
        return t.mode
    if os.environ.get("WANDB_MODE"):
        return {"dryrun": "offline", "run": "online"}.get(os.environ["WANDB_MODE"], os.environ["WANDB_MODE"])
    return "online" if wandb_logged_in() else "offline"


def wandb_logged_in() -> bool:
    """A W&B key is at hand (`wandb_key_source`): the run goes online in mode auto."""
    return wandb_key_source() is not None


def wandb_key_source() -> str | None:
    """Where the W&B key comes from, to show (never the key itself): WANDB_API_KEY, or the netrc file
    (NETRC, else ~/.netrc) that `wandb login` wrote with a login for api.wandb.ai; None without a key."""
    if os.environ.get("WANDB_API_KEY"):
        return "WANDB_API_KEY"
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        if path.is_file() and netrc.netrc(path).authenticators("api.wandb.ai"):
            return str(path)
    except (OSError, netrc.NetrcParseError):
        pass
    return None


def mlflow_uri(cfg: Config) -> str:
    """tracking.uri, else the SQLite store beside the runs: sqlite:///<general.output_dir>/mlflow.db (absolute)."""
    return cfg.tracking.uri or f"sqlite:///{Path(cfg.general.output_dir).resolve() / 'mlflow.db'}"


class MlflowTracker(Tracker):
    backend = "mlflow"

    def __init__(self, cfg: Config, run_dir: Path, run_name: str):
        super().__init__(cfg, run_dir, run_name)
        import mlflow

        output_dir = cfg.general.output_dir.resolve()
        self.uri = mlflow_uri(cfg)
        mlflow.set_tracking_uri(self.uri)
        experiment = mlflow.get_experiment_by_name(cfg.tracking.project)
        if experiment is None:
            # Artifacts beside the database, not in a ./mlruns of whatever directory we run from.
            experiment_id = mlflow.create_experiment(
                cfg.tracking.project, artifact_location=(output_dir / "mlartifacts").as_uri()
            )
        else:
            experiment_id = experiment.experiment_id
        tags = {tag: "" for tag in cfg.tracking.tags}
        if cfg.tracking.group:
            tags["group"] = cfg.tracking.group
        self.run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags, description=redact(cfg.general.notes) or None)
        # MLflow caps a param value at 6,000 characters; a config value never comes close.
        mlflow.log_params({k: str(v) for k, v in flatten(self.config).items()})
        self.mlflow = mlflow

    def log(self, metrics: dict[str, float], step: int) -> None:
        numbers = {metric_name(k).replace("/", "_"): float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        self.mlflow.log_metrics(numbers, step=step)

    def log_predictions(self, predictions: pd.DataFrame) -> None:
        self.mlflow.log_table(data=predictions, artifact_file="dev_predictions.json")

    def log_model(self, model_dir: Path) -> None:
        self.mlflow.log_artifacts(str(model_dir), artifact_path="checkpoint-best")

    def log_data(self, files: dict[str, Path]) -> dict[str, Any]:
        sha256 = {name: file_sha256(path) for name, path in files.items()}
        for name, path in files.items():
            # data_files keeps each file's own name, so its folder alone places it.
            self.mlflow.log_artifact(str(path), artifact_path=f"data/{PurePosixPath(name).parent}")
        # Params show in the runs table: runs on the same data have the same values.
        self.mlflow.log_params({f"data_sha256.{name}": digest for name, digest in sha256.items()})
        return {"artifact_path": "data", "sha256": sha256}

    def finish(self, summary: dict[str, Any], failed: bool = False) -> None:
        numbers = {k.replace(".", "_"): float(v) for k, v in flatten(summary).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.mlflow.log_metrics(numbers)
        self.mlflow.end_run(status="FAILED" if failed else "FINISHED")

    def abandon(self) -> None:
        # end_run takes the run off this process's stack before it calls the server: a later run can start.
        with contextlib.suppress(Exception):
            self.mlflow.end_run(status="FAILED")

    def info(self) -> dict[str, Any]:
        ui = f"mlflow ui --backend-store-uri {self.uri}"
        return {"backend": self.backend, "url": ui, "run_id": self.run.info.run_id, "mode": None, "dir": self.uri}


class TensorBoardTracker(Tracker):
    backend = "tensorboard"

    def __init__(self, cfg: Config, run_dir: Path, run_name: str):
        super().__init__(cfg, run_dir, run_name)
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = run_dir / "tensorboard"
        self.writer = SummaryWriter(str(self.log_dir))
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in flatten(self.config).items()))

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(metric_name(key), value, step)

    def log_predictions(self, predictions: pd.DataFrame) -> None:
        # TensorBoard renders text as markdown; an indented block keeps the CSV readable.
        csv = predictions.head(100).to_csv(index=False)
        self.writer.add_text("dev/predictions", "\n".join(f"    {line}" for line in csv.splitlines()))

    def log_data(self, files: dict[str, Path]) -> None:
        warn_once("tracking.log_data: TensorBoard keeps no files; the data's sha256 are in environment.json")
        return None

    def finish(self, summary: dict[str, Any], failed: bool = False) -> None:
        for key, value in flatten(summary).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"final/{key}", value, 0)
        self.writer.close()

    def info(self) -> dict[str, Any]:
        return {"backend": self.backend, "url": f"tensorboard --logdir {self.log_dir}", "run_id": None, "mode": None, "dir": str(self.log_dir)}


_warned: set[str] = set()


def warn_once(message: str) -> None:
    """Log a warning the first time only (a tuning study starts a tracker per trial)."""
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


BACKENDS = {"none": Tracker, "wandb": WandbTracker, "mlflow": MlflowTracker, "tensorboard": TensorBoardTracker}


def start_tracker(cfg: Config, run_dir: Path) -> Tracker:
    """The configured tracker, started, with tracking.json written; a bad setup is a UserError.

    With tracking.log_data the data files are logged too, and tracking.json says how under "data".
    """
    backend = BACKENDS[cfg.tracking.backend]
    try:
        tracker = backend(cfg, run_dir, run_dir.name)
    except ImportError as exc:
        raise UserError(f"tracking.backend={cfg.tracking.backend} needs {exc.name}; run `uv sync` or set tracking.backend=none") from None
    except Exception as exc:  # a server that cannot be reached (W&B, MLflow): best effort unless tracking.required
        tracker = local_tracker(cfg, run_dir, exc)
    tracker = BestEffort(tracker, cfg.tracking.required, run_dir)
    write_json(run_dir / "tracking.json", tracker.info())
    if cfg.tracking.log_data:
        try:
            data = tracker.log_data(data_files(cfg))
        except BaseException:
            tracker.finish({}, failed=True)  # the caller has no tracker yet to close
            raise
        if data is not None:
            write_json(run_dir / "tracking.json", {**tracker.info(), "data": data})
    return tracker


# ---------------------------------------------------------------------------------------------
# Best effort: a tracker that cannot be reached never costs the run (unless tracking.required)


def _reason(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def local_tracker(cfg: Config, run_dir: Path, exc: Exception) -> Tracker:
    """The tracker that needs no server, after `exc` at the start: W&B offline, MLflow in the local store."""
    t = cfg.tracking
    if t.required or t.backend not in ("wandb", "mlflow"):
        raise UserError(
            f"tracking.backend={t.backend} cannot be reached ({_reason(exc)}); check the server and the network, "
            "or set tracking.required=false to go on logging locally"
        ) from None
    if t.backend == "wandb":
        local = cfg.model_copy(update={"tracking": t.model_copy(update={"mode": "offline"})})
        tracker = WandbTracker(local, run_dir, run_dir.name)
        log.warning(f"W&B cannot be reached ({_reason(exc)}): this run logs offline under {run_dir}/wandb; "
                    f"upload it later with `wandb sync {run_dir}/wandb/offline-run-*`")
        return tracker
    local = cfg.model_copy(update={"tracking": t.model_copy(update={"uri": None})})
    tracker = MlflowTracker(local, run_dir, run_dir.name)
    log.warning(f"MLflow at {t.uri} cannot be reached ({_reason(exc)}): this run logs to the local store {tracker.uri}; "
                f"see it with `mlflow ui --backend-store-uri {tracker.uri}`")
    return tracker


class BestEffort:
    """A started tracker whose failure mid-run (a server gone) costs one warning and the tracker, not the run:
    every metric is in train_log.jsonl anyway. tracking.required: a UserError instead."""

    def __init__(self, tracker: Tracker, required: bool, run_dir: Path):
        self.tracker, self.required, self.run_dir, self.down = tracker, required, run_dir, False

    def __getattr__(self, name: str):
        return getattr(self.tracker, name)

    def _call(self, method: str, *args, **kwargs):
        if self.down:
            return None
        try:
            return getattr(self.tracker, method)(*args, **kwargs)
        except UserError:
            raise  # a setup problem for the user, not a server gone
        except Exception as exc:
            name = self.tracker.backend
            if self.required:
                raise UserError(f"tracking: {name} stopped answering ({_reason(exc)}); tracking.required=true stops the run") from None
            self.down = True
            self.tracker.abandon()
            log.warning(f"tracking: {name} stopped answering ({_reason(exc)}); the run goes on without it "
                        f"(every logged metric is in {self.run_dir / 'train_log.jsonl'})")
            return None

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._call("log", metrics, step)

    def log_predictions(self, predictions: pd.DataFrame) -> None:
        self._call("log_predictions", predictions)

    def log_model(self, model_dir: Path) -> None:
        self._call("log_model", model_dir)

    def log_data(self, files: dict[str, Path]) -> dict[str, Any] | None:
        return self._call("log_data", files)

    def finish(self, summary: dict[str, Any], failed: bool = False) -> None:
        self._call("finish", summary, failed)

    def info(self) -> dict[str, Any]:
        return self.tracker.info()
