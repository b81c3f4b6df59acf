"""The library logs, the CLI renders: dsum's messages go through the "dsum" logger's one console
handler (info on stdout, warnings on stderr), and `dsum -q` / set_verbosity("quiet") leave only
warnings, errors and the result a verb was asked for — captured here as a user would see them."""

import json
import logging

import pandas as pd
import pytest
from conftest import REPO
from fake_openai_server import FakeChatServer
from typer.testing import CliRunner

import dsum
from dsum.cli import app
from dsum.config import load_config
from dsum.llm.summarize import summarize_split
from dsum.util import library_noise
from test_llm import KEY, llm_sets

DEV = REPO / "data/sample/dev.csv"


@pytest.fixture
def verbosity(monkeypatch):
    """set_verbosity as a test sets it, undone afterwards (levels and environment)."""
    import optuna
    from transformers.utils import logging as transformers_logging

    monkeypatch.setenv("DSUM_VERBOSITY", "")  # recorded as unset: removed again at teardown
    monkeypatch.delenv("DSUM_VERBOSITY")
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "")  # recorded as unset: removed again at teardown
    monkeypatch.delenv("TRANSFORMERS_VERBOSITY")
    before = transformers_logging.get_verbosity(), optuna.logging.get_verbosity(), logging.getLogger("dsum").level
    yield dsum.set_verbosity
    library_noise.apply("normal")
    transformers_logging.set_verbosity(before[0])
    optuna.logging.set_verbosity(before[1])
    logging.getLogger("dsum").setLevel(before[2])


def test_messages_go_to_the_console_info_on_stdout_warnings_on_stderr(verbosity, capsys):
    log = logging.getLogger("dsum.verbs.folds")
    verbosity("normal")
    log.info("fold 1/5: 16 held-out rows")
    log.warning("tracking.log_data: TensorBoard keeps no files")
    assert capsys.readouterr() == ("fold 1/5: 16 held-out rows\n", "warning: tracking.log_data: TensorBoard keeps no files\n")
    verbosity("quiet")
    log.info("fold 2/5: 16 held-out rows")
    log.warning("still shown")
    log.error("shown too")
    assert capsys.readouterr() == ("", "warning: still shown\nerror: shown too\n")


def test_quiet_score_and_data_check_print_their_result_and_nothing_else(verbosity):
    score = CliRunner().invoke(app, ["-q", "score", "--pred", str(DEV), "--gold", str(DEV), "--analyser", "whitespace"])
    assert score.exit_code == 0, score.output
    assert score.stdout == "score 100.00  (ROUGE-1 1.0000  ROUGE-2 1.0000  ROUGE-L 1.0000; 20 rows, analyser whitespace)\n"
    assert score.stderr == ""

    check = CliRunner().invoke(app, ["-q", "data", "check", "--json", str(DEV)])
    assert check.exit_code == 0, check.output
    (report,) = json.loads(check.stdout)
    assert (report["rows"], report["kind"], check.stderr) == (20, "dev", "")


def test_quiet_llm_summarize_shows_no_progress_and_no_report_only_its_result(verbosity, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("UPSTAGE_API_KEY", KEY)
    with FakeChatServer(KEY) as server:
        args = ["llm", "summarize", "-c", "configs/solar-api.yaml", "--split", "dev", "--limit", "5"]
        for override in [*llm_sets(server, tmp_path), "general.run_name=quiet"]:
            args += ["--set", override]
        quiet = CliRunner().invoke(app, ["-q", *args])
        assert quiet.exit_code == 0, quiet.output
        verbosity("normal")
        normal = CliRunner().invoke(app, [*args[:-1], "general.run_name=normal"])
        assert normal.exit_code == 0, normal.output

    dev = json.loads((tmp_path / "runs/quiet/metrics.json").read_text())["dev"]
    assert quiet.stdout == (
        f"dev board score {dev['score']:.2f} (R1 {dev['rouge1']:.4f} R2 {dev['rouge2']:.4f} RL {dev['rougeL']:.4f}; 5 rows)\n"
        f"submission: {tmp_path / 'runs/quiet/dev_submission.csv'} (passed the submission check)\n"
    )
    assert quiet.stderr == ""
    # Without -q the same run shows the closing report (and the progress display) on stderr; its result is the same.
    assert "LLM report (dev)" in normal.stderr and "from the cache" in normal.stderr
    assert normal.stdout == quiet.stdout.replace("runs/quiet/", "runs/normal/")


def test_a_quiet_library_call_prints_nothing(verbosity, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("UPSTAGE_API_KEY", KEY)
    verbosity("quiet")
    with FakeChatServer(KEY) as server:
        cfg = load_config("configs/solar-api.yaml", [*llm_sets(server, tmp_path), "general.run_name=lib"])
        result = summarize_split(cfg, "dev", limit=3)
    assert capsys.readouterr() == ("", "")
    assert result.stats.answered == 3
    assert len(pd.read_csv(result.submission)) == 3


def test_the_libraries_bars_and_noise_show_only_when_verbose(verbosity):
    import warnings

    from transformers.utils import logging as transformers_logging

    noise = "`is_gradient_checkpointing` is deprecated and will be removed in v6."  # what peft makes transformers say
    other = "a library's warning dsum does not know"
    seen = {}
    for level in ("normal", "verbose", "quiet"):
        verbosity(level)
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn(noise, FutureWarning)
            warnings.warn(other, UserWarning)
        seen[level] = ([str(w.message) for w in caught], transformers_logging.is_progress_bar_enabled())
    assert seen == {"normal": ([other], False), "verbose": ([noise, other], True), "quiet": ([], False)}


def test_a_tied_embedding_in_modules_to_save_is_said_in_one_dsum_line(verbosity, capsys):
    from transformers import AutoModelForCausalLM

    from dsum.config import TinyModelConfig
    from dsum.model.loading import tiny_config
    from dsum.model.tied import note_tied_embeddings

    verbosity("normal")
    tiny = TinyModelConfig(architecture="qwen3", d_model=16, layers=1, heads=2, ffn_dim=32, vocab_size=64)
    model = AutoModelForCausalLM.from_config(tiny_config(tiny, vocab_size=64, pad=0, bos=1, eos=2))
    note_tied_embeddings(model, ["embed_tokens"])
    note_tied_embeddings(model, ["q_proj"])  # nothing tied in the adapter: nothing said
    assert capsys.readouterr() == (
        "lora.modules_to_save: embed_tokens is tied to lm_head in the base model; the adapter trains its own copy "
        "of embed_tokens and lm_head keeps the base's weights (export --merge writes them untied)\n", "")
