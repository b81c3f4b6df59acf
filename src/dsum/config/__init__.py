"""The config: one validated object from a YAML recipe and its overrides.

- `schema.py`: the sections and fields as pydantic models (Config and its parts), each documented.
- `load.py`: reading a file, `--set a.b=v` overrides typed by their field, paths resolved from the
  project root, readable validation errors, the JSON schema.
- `diff.py`: configs as flat dotted keys and what differs between two (runs compare, record.md, folds).

Both are re-exported here: `from dsum.config import Config, load_config`.
"""

from dsum.config.load import (
    apply_override, field_annotation, json_schema, load_config, parse_value, path_fields, project_root, resolve_paths,
    set_dotted, validate_config,
)
from dsum.config.schema import (
    AugmentConfig, CleanRule, Config, DataConfig, EnsembleConfig, GeneralConfig, GenerationConfig, LlmConfig, LoraConfig,
    MetricConfig, ModelConfig, PromptConfig, SearchParam, TinyModelConfig, TrackingConfig, TrainingConfig, TuneConfig,
)

__all__ = [
    "AugmentConfig", "CleanRule", "Config", "DataConfig", "EnsembleConfig", "GeneralConfig", "GenerationConfig", "LlmConfig",
    "LoraConfig", "MetricConfig", "ModelConfig", "PromptConfig", "SearchParam", "TinyModelConfig", "TrackingConfig",
    "TrainingConfig", "TuneConfig", "apply_override", "field_annotation", "json_schema", "load_config", "parse_value",
    "path_fields", "project_root", "resolve_paths", "set_dotted", "validate_config",
]
