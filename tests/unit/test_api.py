"""The library API (`import dsum`), the relative-path rule of config files, `.env`, and the
global options of the command: -v/-q, completion, `dsum config schema`."""

import json
import logging
import os
from pathlib import Path

import pytest
from conftest import REPO, TINY, run_dsum
from typer.testing import CliRunner

import dsum
from dsum.util import envfile
from dsum.cli import app
from dsum.config import json_schema, path_fields, project_root

DEMO = REPO / "configs" / "demo.yaml"
API = ["load_config", "train", "predict", "score", "tune", "eda", "inspect", "check_data", "check_submission", "list_runs",
       "set_verbosity"]


def test_the_api_names_are_functions_even_after_their_modules_are_imported():
    import dsum.report.build  # noqa: F401  (importing a submodule sets it on its package...)
    import dsum.verbs.predict  # noqa: F401
    import dsum.verbs.train  # noqa: F401
    import dsum.verbs.tune  # noqa: F401
    from dsum.verbs.train import check_training  # ...and the module stays importable

    for name in API:
        assert callable(getattr(dsum, name)) and getattr(dsum, name).__module__ in ("dsum", "dsum.config.load", "dsum.util.verbosity"), name
    assert dsum.UserError is dsum.util.errors.UserError and isinstance(dsum.__version__, str)
    assert callable(check_training)


def test_load_config_takes_a_mapping_typed_by_the_fields():
    cfg = dsum.load_config(DEMO, {"training.epochs": 1, "general.data_version": "2", "training.learning_rate": "3e-5",
                                  "training.batch_size": 4, "general.notes": 2024, "data.dev": REPO / "data/sample/dev.csv",
                                  "tracking.tags": ["a", "b"]})
    assert cfg.training.epochs == 1.0 and isinstance(cfg.training.epochs, float)
    assert cfg.general.data_version == "2" and cfg.general.notes == "2024"  # text fields get text
    assert cfg.training.learning_rate == 3e-5 and cfg.training.batch_size == 4  # a string is read as --set reads it
    assert cfg.data.dev == REPO / "data/sample/dev.csv" and cfg.tracking.tags == ["a", "b"]


@pytest.mark.parametrize(
    "path,overrides,message",
    [
        (DEMO, {"training.learnig_rate": 1e-4}, "did you mean 'learning_rate'"),
        (DEMO, {"training.batch_size": "many"}, "training.batch_size: Input should be a valid integer"),
        (DEMO, {"training.epochs": -1}, "training.epochs: Input should be greater than 0"),
        (REPO / "configs/nope.yaml", None, "config file not found"),
    ],
)
def test_a_bad_config_raises_user_error_not_system_exit(path, overrides, message):
    with pytest.raises(dsum.UserError, match=message):
        dsum.load_config(path, overrides)


def test_api_errors_are_user_errors_with_the_clis_message(tmp_path):
    with pytest.raises(dsum.UserError, match="nope.csv does not exist"):
        dsum.score(tmp_path / "nope.csv", REPO / "data/sample/dev.csv")
    with pytest.raises(dsum.UserError, match="this config has no tune: section"):
        dsum.tune(dsum.load_config(DEMO))


def test_score_check_data_and_check_submission_return_what_the_cli_prints():
    score = dsum.score(REPO / "data/sample/dev.csv", REPO / "data/sample/dev.csv", analyser="whitespace")
    assert score.score == pytest.approx(100, abs=1e-4) and score.rows == 20  # rouge's F1 has an epsilon
    reports = dsum.check_data("data/sample/dev.csv")
    assert [(r.kind, r.rows, r.has_errors) for r in reports] == [("dev", 20, False)]
    assert [r.to_dict() for r in reports] == json.loads(run_dsum("data", "check", "data/sample/dev.csv", "--json").stdout)
    problems = dsum.check_submission(REPO / "data/sample/sample_submission.csv", REPO / "data/sample/test.csv")
    assert problems == []
    problems = dsum.check_submission(REPO / "data/sample/sample_submission.csv", REPO / "data/sample/dev.csv")
    assert problems and all(isinstance(p, str) for p in problems)


# --- relative paths -------------------------------------------------------------------------------


def test_config_paths_are_relative_to_the_project_root_from_any_directory(tmp_path, monkeypatch):
    assert project_root(DEMO) == REPO
    assert set(path_fields()) == {"general.output_dir", "data.train", "data.dev", "data.test", "data.sample_submission",
                                  "tune.checkpoint", "llm.cache", "augment.source", "augment.output"}
    from_root = dsum.load_config(DEMO)  # pytest runs in the repo root: paths as written
    assert from_root.data.dev == Path("data/sample/dev.csv") and from_root.general.output_dir == Path("runs")
    for elsewhere in (REPO / "examples", REPO / "configs", tmp_path):
        monkeypatch.chdir(elsewhere)
        cfg = dsum.load_config(DEMO if elsewhere == tmp_path else os.path.relpath(DEMO, elsewhere))
        assert cfg.data.train == [REPO / "data/sample/train.csv"]
        assert (cfg.data.dev, cfg.data.test, cfg.data.sample_submission) == (
            REPO / "data/sample/dev.csv", REPO / "data/sample/test.csv", REPO / "data/sample/sample_submission.csv")
        assert cfg.general.output_dir == REPO / "runs"  # the same run directories as the shell
        assert cfg.llm.cache == REPO / "runs/llm_cache.sqlite"  # a default counts as written in the file
        assert cfg.data.dev.is_file()


def test_override_paths_are_relative_to_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = dsum.load_config(DEMO, {"general.output_dir": "my-runs", "data.train": ["a.csv"]})
    assert cfg.general.output_dir == tmp_path / "my-runs" and cfg.data.train == [tmp_path / "a.csv"]
    assert cfg.data.dev == REPO / "data/sample/dev.csv"  # untouched keys still come from the file
    cli = dsum.load_config(DEMO, ["general.output_dir=my-runs", f"data.dev={REPO}/x.csv"])
    assert cli.general.output_dir == tmp_path / "my-runs" and cli.data.dev == REPO / "x.csv"


def test_a_model_folder_in_a_config_resolves_like_data_and_a_hub_name_stays(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "models" / "mine").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    (project / "configs").mkdir()
    (project / "configs" / "a.yaml").write_text("model:\n  name: models/mine\n")
    (project / "configs" / "b.yaml").write_text("model:\n  name: digit82/kobart-summarization\n")
    monkeypatch.chdir(project / "configs")
    assert dsum.load_config("a.yaml").model.name == str(project / "models" / "mine")
    assert dsum.load_config("b.yaml").model.name == "digit82/kobart-summarization"


def test_a_config_outside_any_project_keeps_paths_relative_to_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("data:\n  dev: data/sample/dev.csv\n")
    assert project_root(tmp_path / "run" / "config.yaml") is None
    cfg = dsum.load_config(tmp_path / "run" / "config.yaml")  # cwd: the repo root
    assert cfg.data.dev == Path("data/sample/dev.csv")


def test_a_saved_config_from_another_directory_reloads_to_the_same_values(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO / "examples")
    cfg = dsum.load_config("../configs/demo.yaml", [*TINY, "training.epochs=1"])
    (tmp_path / "config.yaml").write_text(cfg.to_yaml())
    monkeypatch.chdir(tmp_path)
    assert dsum.load_config(tmp_path / "config.yaml") == cfg  # absolute paths: the same files from anywhere


# --- .env -------------------------------------------------------------------------------------------


def test_dotenv_is_read_once_from_the_current_directory_upward_without_printing(tmp_path, monkeypatch, capsys):
    (tmp_path / ".env").write_text("DSUM_TEST_SECRET=from-dotenv\nDSUM_TEST_SET=from-dotenv\n")
    (tmp_path / "examples").mkdir()
    monkeypatch.chdir(tmp_path / "examples")
    monkeypatch.delenv("DSUM_TEST_SECRET", raising=False)
    monkeypatch.setenv("DSUM_TEST_SET", "from-environment")
    monkeypatch.setattr(envfile, "_loaded", False)
    try:
        dsum.check_submission(REPO / "data/sample/sample_submission.csv", REPO / "data/sample/test.csv")
        assert os.environ["DSUM_TEST_SECRET"] == "from-dotenv"
        assert os.environ["DSUM_TEST_SET"] == "from-environment"  # the environment wins
        assert envfile.load_env_file() == []  # once per process
        captured = capsys.readouterr()
        assert "from-dotenv" not in captured.out + captured.err
    finally:
        os.environ.pop("DSUM_TEST_SECRET", None)


# --- the command's global options ---------------------------------------------------------------------


@pytest.fixture
def restore_verbosity(monkeypatch):
    import optuna
    from transformers.utils import logging as transformers_logging

    monkeypatch.setenv("DSUM_VERBOSITY", "")  # recorded as unset: removed again at teardown
    monkeypatch.delenv("DSUM_VERBOSITY")  # restored (unset) at teardown
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "")  # recorded as unset: removed again at teardown
    monkeypatch.delenv("TRANSFORMERS_VERBOSITY")
    before = transformers_logging.get_verbosity(), optuna.logging.get_verbosity(), logging.getLogger("dsum").level
    yield transformers_logging, optuna
    transformers_logging.set_verbosity(before[0])
    optuna.logging.set_verbosity(before[1])
    logging.getLogger("dsum").setLevel(before[2])


@pytest.mark.parametrize(
    "flag,transformers_level,optuna_level,dsum_level",
    [("-q", logging.ERROR, logging.WARNING, logging.WARNING), ("--quiet", logging.ERROR, logging.WARNING, logging.WARNING),
     ("-v", logging.INFO, logging.DEBUG, logging.DEBUG), ("--verbose", logging.INFO, logging.DEBUG, logging.DEBUG)],
)
def test_quiet_and_verbose_set_transformers_optuna_and_dsum_levels(restore_verbosity, flag, transformers_level, optuna_level, dsum_level):
    transformers_logging, optuna = restore_verbosity
    result = CliRunner().invoke(app, [flag, "config", "show", "-c", str(DEMO)])
    assert result.exit_code == 0, result.output
    assert transformers_logging.get_verbosity() == transformers_level
    assert optuna.logging.get_verbosity() == optuna_level
    assert logging.getLogger("dsum").level == dsum_level
    assert os.environ["DSUM_VERBOSITY"] == ("quiet" if "q" in flag else "verbose")  # for tune workers, torchrun ranks


def test_quiet_reaches_a_process_that_imports_the_libraries_later(restore_verbosity):
    dsum.set_verbosity("quiet")
    code = ("import optuna, dsum.verbs.tune; from transformers.utils import logging as t; "
            "print(t.get_verbosity(), optuna.logging.get_verbosity())")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), check=True)
    assert out.stdout.split() == [str(logging.ERROR), str(logging.WARNING)]


def test_quiet_and_verbose_together_is_a_usage_error():
    result = CliRunner().invoke(app, ["-q", "-v", "config", "show", "-c", str(DEMO)])
    assert result.exit_code == 2 and "choose one of --verbose and --quiet" in result.output
    with pytest.raises(dsum.UserError, match="verbosity must be one of quiet, normal, verbose"):
        dsum.set_verbosity("loud")


def test_completion_can_be_installed():
    result = CliRunner().invoke(app, ["--help"])
    assert "--install-completion" in result.output and "--show-completion" in result.output


def _leaves(schema: dict):
    """(dotted key, property) of every field of the schema, nested models included."""
    defs = schema["$defs"]

    def walk(model: dict, prefix: str):
        for name, prop in model["properties"].items():
            yield prefix + name, prop
            refs = [prop.get("$ref"), *(a.get("$ref") for a in prop.get("anyOf", []))]
            refs += [prop.get("items", {}).get("$ref"), prop.get("additionalProperties", {}).get("$ref")
                     if isinstance(prop.get("additionalProperties"), dict) else None]
            refs += [a.get("items", {}).get("$ref") for a in prop.get("anyOf", [])]
            for ref in filter(None, refs):
                yield from walk(defs[ref.split("/")[-1]], f"{prefix}{name}.")

    return list(walk(schema, ""))


def test_config_schema_is_json_with_a_description_for_every_field(tmp_path):
    result = run_dsum("config", "schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema == json.loads(json.dumps(json_schema()))
    leaves = dict(_leaves(schema))
    assert {"general.output_dir", "data.train", "data.rules.pattern", "model.tiny.d_model", "training.learning_rate",
            "tune.space.low", "llm.cache", "augment.translate_prompt"} <= set(leaves)
    undocumented = [key for key, prop in leaves.items() if not prop.get("description")]
    assert undocumented == []
    assert leaves["training.learning_rate"]["description"] == "Peak learning rate of AdamW."
    assert schema["$defs"]["TrainingConfig"]["additionalProperties"] is False  # an editor flags unknown keys
