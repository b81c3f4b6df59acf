"""Every rule in one place: `dsum doctor` shows what the run will do because it asks the run's own
functions (precision, optimizer, tracking defaults, W&B login); the helpers live where they belong."""

import importlib.util

import pytest
from conftest import REPO

from dsum.config import load_config
from dsum.config.diff import MISSING, config_diff, flatten
from dsum.data.files import split_file, topic_column
from dsum.model.precision import PrecisionChoice, choose_precision
from dsum.runs.tracking import mlflow_uri, wandb_key_source, wandb_logged_in
from dsum.util.errors import UserError
from dsum.util.markdown import markdown_table
from dsum.verbs.doctor import OK, check_tracking
from dsum.verbs.trainer import optimizer_name


def test_the_precision_rule_on_every_kind_of_machine():
    assert choose_precision("auto", "bart", cuda=False, bf16=False) == PrecisionChoice("fp32")
    assert choose_precision("auto", "bart", cuda=True, bf16=True) == PrecisionChoice("bf16")
    assert choose_precision("auto", "bart", cuda=True, bf16=False) == PrecisionChoice("fp16")
    assert choose_precision("auto", "t5", cuda=True, bf16=False) == PrecisionChoice(
        "fp32", "precision: fp32 (t5 gives NaN losses in fp16 and this GPU has no bf16)")
    assert choose_precision("fp16", "t5", cuda=True, bf16=True) == PrecisionChoice(
        "fp16", "training.precision=fp16 with t5: T5 overflows in fp16 (NaN losses); prefer auto", True)
    assert choose_precision("fp16", "bart", cuda=False, bf16=False, training=False) == PrecisionChoice("fp32")
    with pytest.raises(UserError, match="^training.precision=bf16 needs a CUDA GPU and none is visible"):
        choose_precision("bf16", "bart", cuda=False, bf16=False)
    with pytest.raises(UserError, match="^this GPU does not support bf16"):
        choose_precision("bf16", "bart", cuda=True, bf16=False)


def test_the_auto_optimizer_is_the_one_a_cuda_run_of_the_config_uses():
    lora = load_config(REPO / "configs/solar-qlora.yaml")
    paged = "paged_adamw_8bit" if importlib.util.find_spec("bitsandbytes") is not None else "adamw_torch"
    assert (optimizer_name(lora, cuda=True), optimizer_name(lora, cuda=False)) == (paged, "adamw_torch")
    demo = load_config(REPO / "configs/demo.yaml")
    assert optimizer_name(demo, cuda=True) == "adamw_torch"
    assert optimizer_name(load_config(REPO / "configs/demo.yaml", ["training.optimizer=paged_adamw_8bit"]), cuda=False) == "paged_adamw_8bit"


def test_doctor_shows_the_mlflow_store_the_tracker_opens(tmp_path):
    cfg = load_config(REPO / "configs/demo.yaml", ["tracking.backend=mlflow", f"general.output_dir={tmp_path / 'runs'}"])
    assert mlflow_uri(cfg) == f"sqlite:///{(tmp_path / 'runs').resolve()}/mlflow.db"
    assert check_tracking(cfg).detail == f"MLflow, experiment {cfg.tracking.project}, store sqlite:///{(tmp_path / 'runs').resolve()}/mlflow.db"
    given = load_config(REPO / "configs/demo.yaml", ["tracking.backend=mlflow", "tracking.uri=http://mlflow:5000"])
    assert (mlflow_uri(given), check_tracking(given).level) == ("http://mlflow:5000", OK)


def test_wandb_login_is_read_one_way(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    netrc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc))
    assert (wandb_key_source(), wandb_logged_in()) == (None, False)
    netrc.write_text("machine api.wandb.ai-mirror.example\n  login user\n  password abcd\n")  # not W&B's machine
    assert (wandb_key_source(), wandb_logged_in()) == (None, False)
    netrc.write_text("machine api.wandb.ai\n  login user\n  password abcd\n")
    assert (wandb_key_source(), wandb_logged_in()) == (str(netrc), True)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert wandb_key_source() == "WANDB_API_KEY"


def test_split_names_and_topic_columns_have_one_rule():
    data = load_config(REPO / "configs/demo.yaml").data
    assert (split_file(data, "dev"), split_file(data, "test")) == (data.dev, data.test)
    with pytest.raises(UserError, match=r"^--split must be dev or test, not 'train'$"):
        split_file(data, "train")
    assert [topic_column(c) for c in (["fname", "topic"], ["topic1", "topic2"], ["fname", "dialogue"])] == ["topic", "topic1", None]


def test_config_diff_and_markdown_tables():
    a = {"training": {"learning_rate": 1e-5, "epochs": 3}, "lora": None}
    b = {"training": {"learning_rate": 3e-5, "epochs": 3}, "tune": {"n_trials": 2, "space": {"x": 1}}, "lora": None}
    assert flatten(b) == {"training.learning_rate": 3e-5, "training.epochs": 3, "tune.n_trials": 2, "tune.space.x": 1, "lora": None}
    assert config_diff(a, b) == [("training.learning_rate", 1e-5, 3e-5), ("tune", MISSING, "(section of 2 keys)")]
    assert markdown_table(("key", "value"), [("a|b", 1.5), ("c", "two\nlines")]) == (
        "| key | value |\n|---|---|\n| a\\|b | 1.5 |\n| c | two lines |")
