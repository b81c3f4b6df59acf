"""The YAML recipe as validated pydantic models: load, dotted overrides (--set a.b=1), errors.

A config is data: every section below is a plain model whose fields are documented where they are
declared. Unknown keys are errors that name the key, the valid keys at that level and the closest
match, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dsum.errors import UserError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GeneralConfig(Section):
    run_name: str | None = None
    """Run directory name; None = `{model}_{data_version}_lr{lr}_bs{bs}_ep{epochs}`."""
    output_dir: Path = Path("runs")
    """Where run directories are created."""
    seed: int = 42
    data_version: str = "v1"
    """A short label of the data used (goes into the run name)."""
    notes: str = ""
    """The purpose of the experiment, copied into the run record."""


class CleanRule(Section):
    name: str
    pattern: str
    """A Python regular expression."""
    replacement: str


class DataConfig(Section):
    train: list[Path] = [Path("data/sample/train.csv")]
    """One or more training files (CSV or JSONL); augmented files are appended here."""
    dev: Path = Path("data/sample/dev.csv")
    test: Path = Path("data/sample/test.csv")
    sample_submission: Path | None = Path("data/sample/sample_submission.csv")
    clean: bool = True
    """Apply the clean-up rules to dialogues and summaries (training and inference alike)."""
    rules: list[CleanRule] | None = None
    """Clean-up rules in order; None = dsum's defaults (ㅋ+/ㅎ+ → 웃음, ㅠ+/ㅜ+ → 슬픔, artefacts, spaces)."""


class TinyModelConfig(Section):
    """A small model built from a config, with a tokenizer trained on the training text (offline)."""

    architecture: Literal["bart", "t5"] = "bart"
    d_model: int = 64
    layers: int = 2
    heads: int = 4
    ffn_dim: int = 128
    vocab_size: int = 3000


class ModelConfig(Section):
    name: str = "digit82/kobart-summarization"
    """A hub name or a local folder; ignored when `tiny` is set."""
    tiny: TinyModelConfig | None = None
    max_source_length: int = Field(512, gt=0)
    """Encoder length: longer dialogues are truncated (the count is reported)."""
    max_target_length: int = Field(100, gt=0)
    """Decoder length for training labels."""


class TrainingConfig(Section):
    learning_rate: float = Field(1e-5, gt=0)
    batch_size: int = Field(50, gt=0)
    eval_batch_size: int = Field(32, gt=0)
    epochs: float = Field(20, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    scheduler: str = "cosine"
    """Any transformers `lr_scheduler_type` (linear, cosine, constant, ...)."""
    gradient_accumulation_steps: int = Field(1, gt=0)
    gradient_checkpointing: bool = False
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    """auto = bf16 where the GPU supports it, else fp16 on a GPU, else fp32."""
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    rdrop_alpha: float = Field(0.0, ge=0)
    """R-Drop weight (0 = off): KL between two dropout passes added to the loss."""
    early_stopping_patience: int | None = 3
    early_stopping_threshold: float = 0.001
    save_total_limit: int = Field(2, gt=0)
    eval_strategy: Literal["epoch", "steps"] = "epoch"
    eval_steps: int | None = None
    logging_steps: int = Field(10, gt=0)


class GenerationConfig(Section):
    num_beams: int = Field(4, gt=0)
    no_repeat_ngram_size: int = Field(2, ge=0)
    length_penalty: float = 1.0
    max_new_tokens: int = Field(100, gt=0)
    early_stopping: bool = True


class MetricConfig(Section):
    tokenizer: Literal["mecab", "kiwi", "whitespace"] = "mecab"
    """The morpheme analyser of the board's ROUGE."""


class TrackingConfig(Section):
    backend: Literal["none", "wandb"] = "none"
    project: str = "dsum"
    entity: str | None = None


class Config(Section):
    general: GeneralConfig = GeneralConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    generation: GenerationConfig = GenerationConfig()
    metric: MetricConfig = MetricConfig()
    tracking: TrackingConfig = TrackingConfig()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), allow_unicode=True, sort_keys=False)


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML recipe (or the defaults when `path` is None), apply `a.b=value` overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config file not found: {path} (pass an existing YAML, e.g. configs/demo.yaml)")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}; fix the syntax") from None
        if not isinstance(raw, dict):
            raise UserError(f"{path} must hold a mapping of sections (general:, data:, ...), not {type(raw).__name__}")
    for override in overrides:
        apply_override(raw, override)
    return validate_config(raw, source=str(path) if path else "config")


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set a dotted key in the raw mapping: `training.learning_rate=3e-5` (value parsed as YAML)."""
    key, sep, value = override.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set expects KEY=VALUE with a dotted key, e.g. training.learning_rate=3e-5; got {override!r}")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"--set {key}: {part} is a value, not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(value) if value.strip() else None


def validate_config(raw: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{source}: {describe_error(exc.errors()[0])}") from None


def describe_error(error: dict[str, Any]) -> str:
    """One line for the first validation error; for an unknown key, the valid keys and the closest."""
    loc = [str(part) for part in error["loc"]]
    dotted = ".".join(loc)
    if error["type"] != "extra_forbidden":
        return f"{dotted}: {error['msg']} (got {error.get('input')!r})"
    valid = list(_fields_at(loc[:-1]))
    hint = difflib.get_close_matches(loc[-1], valid, n=1)
    closest = f"; did you mean {hint[0]!r}?" if hint else ""
    return f"unknown key {dotted!r}; valid keys at this level: {', '.join(valid)}{closest}"


def _fields_at(path: list[str]) -> dict[str, Any]:
    """The fields of the model found by walking `path` from Config (list indices are skipped)."""
    model: type[BaseModel] = Config
    for part in path:
        if part.isdigit():
            continue
        annotation = model.model_fields[part].annotation
        model = next(arg for arg in _candidates(annotation) if isinstance(arg, type) and issubclass(arg, BaseModel))
    return model.model_fields


def _candidates(annotation: Any) -> list[Any]:
    """Unwrap Optional[...] / list[...] annotations down to the types they hold."""
    args = getattr(annotation, "__args__", None)
    if not args:
        return [annotation]
    return [inner for arg in args for inner in _candidates(arg)]
