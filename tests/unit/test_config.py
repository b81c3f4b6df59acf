"""Tests for dsum.config: --set overrides typed by the field they go to, and validation errors."""

from pathlib import Path

import pytest

from dsum.config import apply_override, field_annotation, load_config, parse_value
from dsum.util.errors import UserError

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "demo.yaml"


def test_text_fields_keep_the_raw_string():
    cfg = load_config(DEMO, ["general.data_version=2", "general.notes=yes", "general.run_name=2024-01-01"])
    assert cfg.general.data_version == "2"
    assert cfg.general.notes == "yes"
    assert cfg.general.run_name == "2024-01-01"
    cfg = load_config(DEMO, ["general.notes=lr: 3e-5 [again]", "model.name=007", "tune.study_name=1.0"])
    assert cfg.general.notes == "lr: 3e-5 [again]"  # no YAML parsing at all: a colon or brackets stay
    assert cfg.model.name == "007" and cfg.tune.study_name == "1.0"
    assert cfg.general.output_dir == Path("runs")  # the tune section was created, nothing else changed


def test_optional_text_fields_take_null_and_empty_as_none():
    cfg = load_config(DEMO, ["general.run_name=null", "general.parent=~", "tracking.entity=", "general.notes="])
    assert (cfg.general.run_name, cfg.general.parent, cfg.tracking.entity) == (None, None, None)
    assert cfg.general.notes == ""  # not optional: the empty string


def test_paths_and_choices_are_text():
    cfg = load_config(DEMO, ["general.output_dir=2024", "data.dev=1.5", "training.scheduler=constant"])
    assert cfg.general.output_dir == Path("2024") and cfg.data.dev == Path("1.5")
    assert cfg.training.scheduler == "constant"
    assert parse_value("tracking.mode", "off") == "off"  # YAML would read a bool
    assert parse_value("metric.tokenizer", "kiwi") == "kiwi"
    assert load_config(DEMO, ["metric.tokenizer=kiwi"]).metric.tokenizer == "kiwi"


def test_other_fields_are_parsed_as_yaml():
    cfg = load_config(
        DEMO,
        [
            "training.learning_rate=3e-5",
            "training.batch_size=4",
            "training.gradient_checkpointing=yes",
            "training.early_stopping_patience=null",
            "data.train=[a.csv,b.csv]",
            "data.rules=[{name: x, pattern: a, replacement: b}]",
        ],
    )
    assert isinstance(cfg.training.learning_rate, float) and cfg.training.learning_rate == 3e-5
    assert cfg.training.batch_size == 4 and cfg.training.gradient_checkpointing is True
    assert cfg.training.early_stopping_patience is None
    assert cfg.data.train == [Path("a.csv"), Path("b.csv")]
    assert [(r.name, r.pattern, r.replacement) for r in cfg.data.rules] == [("x", "a", "b")]


def test_lists_of_text_keep_their_items_as_strings():
    cfg = load_config(DEMO, ["tracking.tags=[2024, yes, v1]", "data.train=[1.csv, 2]"])
    assert cfg.tracking.tags == ["2024", "yes", "v1"]
    assert cfg.data.train == [Path("1.csv"), Path("2")]


def test_field_annotation_walks_the_models():
    assert field_annotation("general.data_version") is str
    assert field_annotation("tune.space.lr.low") == float | None  # "lr": a key of the mapping tune.space
    assert field_annotation("general.nope") is None and field_annotation("nope.x") is None
    assert field_annotation("training.learning_rate.x") is None


def test_unknown_keys_and_bad_values_are_one_line_user_errors():
    with pytest.raises(UserError, match="did you mean 'data_version'"):
        load_config(DEMO, ["general.data_versio=2"])
    with pytest.raises(UserError, match=r"--set training\.learning_rate: '\[1' is not a valid YAML value") as caught:
        load_config(DEMO, ["training.learning_rate=[1"])
    assert "\n" not in str(caught.value)
    with pytest.raises(UserError, match="general is a value, not a section"):
        apply_override({"general": 1}, "general.seed=1")


def test_empty_train_list_is_a_validation_error_naming_the_key_and_the_fix():
    with pytest.raises(UserError) as caught:
        load_config(DEMO, ["data.train=[]"])
    message = str(caught.value)
    assert message.startswith("--set data.train=[]: data.train: ")  # the override is named, not the file
    assert "at least 1 item" in message and "data.train=[data/sample/train.csv]" in message


def test_tune_values_for_text_fields_become_strings():
    pytest.importorskip("optuna")
    from dsum.verbs.tune import with_values

    cfg = load_config(DEMO)
    trial = with_values(cfg, {"general.data_version": 2, "general.notes": 1.5, "training.batch_size": 4})
    assert trial.general.data_version == "2" and trial.general.notes == "1.5"
    assert trial.training.batch_size == 4
    with pytest.raises(UserError, match=r"tune.space: model.tiny.d_model: tiny is not set in this config"):
        with_values(load_config(DEMO, ["model.tiny=null"]), {"model.tiny.d_model": 32})
    with pytest.raises(UserError, match="unknown key 'training.nope'"):
        with_values(cfg, {"training.nope": 1})
