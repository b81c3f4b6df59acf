"""Inputs refused before any work, the same way from the library and the CLI (issue 19's defects).

Each test here failed on 63e5d9b: a traceback, a silent drop, or a refusal that came after the work.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from typer.testing import CliRunner

import dsum
from dsum.cli import app
from dsum.config import load_config
from dsum.data.files import read_examples
from dsum.data.submission import write_submission
from dsum.util.errors import UserError
from dsum.verbs.ensemble import run_mbr
from dsum.verbs.predict import write_candidates

DEV = REPO / "data/sample/dev.csv"


def test_a_config_saved_as_cp949_is_refused_with_the_encoding_named(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_bytes("general:\n  notes: 한국어 메모\n".encode("cp949"))
    with pytest.raises(UserError) as refused:
        load_config(path)
    assert str(refused.value) == (
        f"{path} is not UTF-8 (it reads as cp949, a Windows editor's Korean encoding); bad byte 0xc7 at offset 18: "
        "re-save it as UTF-8 (e.g. `iconv -f cp949 -t utf-8 recipe.yaml > fixed.yaml`)"
    )


def _two_sources(tmp_path: Path) -> list[Path]:
    fnames = [ex.fname for ex in read_examples(DEV)][:3]
    return [
        write_submission(tmp_path / f"model{k}.csv", {f: f"요약 {k} {f}" for f in fnames}, fnames) for k in range(2)
    ]


def test_mbr_refuses_a_candidates_file_without_rows_and_writes_nothing(tmp_path):
    empty = write_candidates(tmp_path / "dev_predict_candidates.csv", {})
    assert empty.read_text() == "fname,rank,kind,summary\n"
    out = tmp_path / "mbr.csv"
    with pytest.raises(UserError) as refused:
        run_mbr([empty, *_two_sources(tmp_path)], out)
    assert str(refused.value) == (
        f"{empty}: no rows (a header only): give a file with one prediction (or K candidates) per dialogue"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev_predict_candidates.csv", "model0.csv", "model1.csv"]


def test_mbr_out_naming_a_folder_is_one_line_exit_2_with_nothing_written(tmp_path):
    paths = _two_sources(tmp_path)
    folder = tmp_path / "mbr"
    folder.mkdir()
    with pytest.raises(UserError, match=r"^--out .*mbr: .*mbr is a folder; name the output file, e\.g\. --out .*mbr/mbr\.csv$"):
        run_mbr(paths, folder)
    result = CliRunner().invoke(app, ["ensemble", "mbr", *map(str, paths), "--out", str(folder)])
    assert isinstance(result.exception, UserError) and "is a folder; name the output file" in str(result.exception)
    assert list(folder.iterdir()) == [] and not (tmp_path / "mbr_rows.csv").exists()


@pytest.mark.parametrize(
    ("cli", "api", "message"),
    [
        (["--weights", "1,-1,1"], {"weights": [1, -1, 1]}, "--weights '1,-1,1': weights must be ≥ 0 and not all 0"),
        (["--weights", "1,2"], {"weights": [1, 2]}, "--weights '1,2' has 2 values; give 3, e.g. --weights 1,1,1"),
        (["--source-weights", "0,0"], {"source_weights": [0, 0]}, "--source-weights '0,0': weights must be ≥ 0 and not all 0"),
    ],
)
def test_the_api_refuses_the_weights_the_cli_refuses_with_the_same_message(tmp_path, cli, api, message):
    paths = _two_sources(tmp_path)
    out = tmp_path / "mbr.csv"
    with pytest.raises(UserError) as from_api:
        dsum.mbr(paths, out, **api)
    from_cli = CliRunner().invoke(app, ["ensemble", "mbr", *map(str, paths), "--out", str(out), *cli])
    assert str(from_api.value) == str(from_cli.exception) == message
    assert not out.exists()


# The refusal runs in a fresh interpreter: whether transformers was imported is then a fact, not a timing.
REFUSE = """
import sys
from dsum.cli import main
sys.argv = ["dsum", *{args!r}]
try:
    main()
except SystemExit as exit:
    print(exit.code, "transformers" in sys.modules, "torch" in sys.modules)
"""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--folds", "1"], "error: --folds 1: need at least 2 folds; use dsum train without --folds for one run"),
        (["--folds-include-dev"], "error: --folds-include-dev needs --folds K, e.g. dsum train -c CONFIG --folds 5 --folds-include-dev"),
        (["--folds", "3", "--resume"], "error: --resume does not go with --folds: rerun the same --folds command, it trains only the folds that did not finish"),
    ],
)
def test_train_flags_are_refused_before_the_training_imports(args, message):
    argv = ["train", "-c", str(REPO / "configs/demo.yaml"), *args]
    done = subprocess.run([sys.executable, "-c", REFUSE.format(args=argv)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.stdout.split() == ["2", "False", "False"], done.stderr
    assert done.stderr.strip() == message
    with pytest.raises(UserError, match="--folds 1: need at least 2 folds"):
        dsum.train(load_config(REPO / "configs/demo.yaml"), folds=1)  # the library, the same refusal


def test_predict_refuses_a_missing_sample_submission_before_the_model_loads(tmp_path):
    checkpoint = tmp_path / "checkpoint-best"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{ not a model config")  # loading it would fail otherwise
    cfg = load_config(REPO / "configs/demo.yaml", [f"data.sample_submission={tmp_path / 'absent.csv'}"])
    with pytest.raises(UserError) as refused:
        dsum.predict(cfg, checkpoint, split="test")
    assert str(refused.value) == f"{tmp_path / 'absent.csv'} does not exist: check the path (relative paths start from {Path.cwd()})"
    # A split file that does not read, a bad flag: refused before the model loads too.
    jsonl = tmp_path / "dev.jsonl"
    jsonl.write_text(json.dumps({"fname": "d0", "dialogue": "#Person1#: 안녕"}, ensure_ascii=False) + "\n")
    with pytest.raises(UserError, match=r"dev.jsonl: missing column\(s\) summary"):
        dsum.predict(load_config(REPO / "configs/demo.yaml", [f"data.dev={jsonl}"]), checkpoint, split="dev")
    with pytest.raises(UserError, match=r"--candidates 5: the K best beams need 1 ≤ K ≤ generation.num_beams \(2\)"):
        dsum.predict(cfg.model_copy(update={"data": cfg.data.model_copy(update={"sample_submission": None})}), checkpoint, "test", candidates=5)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["checkpoint-best", "config.json", "dev.jsonl"]
