"""The `dsum` command as a user runs it: outputs, exit codes, one-line errors."""

import json
import re

import pandas as pd
import pytest
import yaml
from conftest import REPO, run_dsum

VERBS = [
    ["config", "show"], ["config", "schema"], ["data", "check"], ["data", "preprocess"], ["score"], ["train"], ["predict"],
    ["submission", "check"], ["runs"], ["runs", "compare"], ["doctor"], ["tune"], ["average"], ["ensemble", "mbr"],
]


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v))
def test_every_verb_has_help_with_an_example(verb):
    result = run_dsum(*verb, "--help")
    assert result.returncode == 0
    assert "Example: dsum" in result.stdout


def test_score_of_references_against_themselves_is_100():
    result = run_dsum("score", "--pred", "data/sample/dev.csv", "--gold", "data/sample/dev.csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("score 100.00")


def test_score_json_and_per_row(tmp_path):
    sub = pd.read_csv(REPO / "data/sample/dev.csv")[["fname", "summary"]]
    sub.loc[0, "summary"] = ""  # an empty prediction scores 0 for its row instead of crashing
    sub.iloc[::-1].to_csv(tmp_path / "pred.csv", index=False)  # rows matched by fname, not order
    result = run_dsum("score", "--pred", str(tmp_path / "pred.csv"), "--gold", "data/sample/dev.csv",
                      "--json", "--per-row", str(tmp_path / "rows.csv"))
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert set(scores) == {"score", "rouge1", "rouge2", "rougeL", "rows"} and scores["rows"] == 20
    assert scores["score"] == pytest.approx(100 * 19 / 20, abs=1e-4)
    rows = pd.read_csv(tmp_path / "rows.csv")
    assert rows.loc[rows.fname == sub.fname[0], "score"].item() == 0


def test_score_real_dev_is_100(shared_data):
    dev = shared_data / "competition-ko" / "dev.csv"
    result = run_dsum("score", "--pred", str(dev), "--gold", str(dev))
    assert result.returncode == 0 and "score 100.00" in result.stdout


def test_score_three_references_whitespace(shared_data, tmp_path):
    gold = shared_data / "dialogsum-en" / "dialogsum.test.jsonl"
    rows = [json.loads(line) for line in gold.read_text().splitlines()]
    pd.DataFrame({"fname": [r["fname"] for r in rows], "summary": [r["summary1"] for r in rows]}).to_csv(
        tmp_path / "pred.csv", index=False)
    result = run_dsum("score", "--tokenizer", "whitespace", "--pred", str(tmp_path / "pred.csv"), "--gold", str(gold))
    assert result.returncode == 0, result.stderr
    score = float(result.stdout.split()[1])
    assert 0 < score < 100  # summary1 is only one of the three references
    assert "ROUGE-1" in result.stdout and "ROUGE-2" in result.stdout and "ROUGE-L" in result.stdout


def test_data_check_real_files_lists_tokens(shared_data):
    ko = shared_data / "competition-ko"
    result = run_dsum("data", "check", str(ko / "dev.csv"), str(ko / "test.csv"), "--json")
    assert result.returncode == 0, result.stderr
    reports = json.loads(result.stdout)
    dev_tokens = reports[0]["tokens"]
    assert dev_tokens["#Person1#"] > 1000 and dev_tokens["#PhoneNumber#"] == 5
    assert reports[1]["tokens"]["#PassportNumber#"] == 1
    table = run_dsum("data", "check", str(ko / "dev.csv"))
    assert "#Person1#" in table.stdout and "#DateOfBirth#" in table.stdout


def test_data_check_error_exits_2(tmp_path):
    (tmp_path / "dev.csv").write_text("fname,dialogue,summary\ndev_0,#Person1#: 안녕,\n", encoding="utf-8")
    result = run_dsum("data", "check", str(tmp_path / "dev.csv"))
    assert result.returncode == 2 and "empty" in result.stdout


def test_preprocess_reports_rules(tmp_path):
    (tmp_path / "in.csv").write_text('fname,dialogue,summary\nd0,"#Person1#: 좋아ㅋㅋㅋ  ㅠㅠ",#Person1#는 웃는다.\n', encoding="utf-8")
    result = run_dsum("data", "preprocess", str(tmp_path / "in.csv"), str(tmp_path / "out.csv"))
    assert result.returncode == 0, result.stderr
    assert pd.read_csv(tmp_path / "out.csv")["dialogue"][0] == "#Person1#: 좋아웃음 슬픔"
    assert "laugh_k" in result.stdout


def test_config_show_applies_overrides():
    result = run_dsum("config", "show", "-c", "configs/demo.yaml", "--set", "training.learning_rate=3e-5",
                      "--set", "general.notes=lr sweep")
    assert result.returncode == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["training"]["learning_rate"] == 3e-5 and shown["general"]["notes"] == "lr sweep"
    assert shown["model"]["tiny"]["architecture"] == "bart"


@pytest.mark.parametrize(
    "args,expected",
    [
        (["config", "show", "-c", "configs/demo.yaml", "--set", "training.learnig_rate=1"], "did you mean 'learning_rate'"),
        (["config", "show", "-c", "configs/nope.yaml"], "config file not found"),
        (["score", "--pred", "nope.csv", "--gold", "data/sample/dev.csv"], "nope.csv does not exist"),
        (["score", "--pred", "data/sample/test.csv", "--gold", "data/sample/dev.csv"], "summary"),
        (["score", "--pred", "data/sample/dev.csv", "--gold", "data/sample/dev.csv", "--tokenizer", "okt"], "unknown morpheme analyser 'okt' (--analyser, or metric.tokenizer in a config)"),
        (["config", "show", "-c", "configs/demo.yaml", "--set", "training.epoch=3"], "error: --set training.epoch=3: unknown key"),
        (["data", "check", "missing.csv"], "missing.csv does not exist"),
    ],
    ids=["config-typo", "missing-config", "missing-file", "missing-column", "bad-tokenizer", "set-typo-blames-set", "check-missing-file"],
)
def test_user_errors_are_one_line_exit_2(args, expected):
    result = run_dsum(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_id_is_an_error(tmp_path):
    sub = pd.read_csv(REPO / "data/sample/dev.csv")[["fname", "summary"]].iloc[1:]
    sub.to_csv(tmp_path / "pred.csv", index=False)
    result = run_dsum("score", "--pred", str(tmp_path / "pred.csv"), "--gold", "data/sample/dev.csv")
    assert result.returncode == 2 and "no prediction" in result.stderr


def test_set_empty_train_list_is_one_line_exit_2():
    result = run_dsum("config", "show", "-c", "configs/demo.yaml", "--set", "data.train=[]")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == "" and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: --set data.train=[]: data.train: ") and "data.train=[data/sample/train.csv]" in line  # the override, not the file


def test_config_show_keeps_set_text_as_typed():
    result = run_dsum("config", "show", "-c", "configs/demo.yaml", "--set", "general.data_version=2",
                      "--set", "general.notes=yes", "--set", "general.run_name=2024-01-01")
    assert result.returncode == 0, result.stderr
    general = yaml.safe_load(result.stdout)["general"]
    assert (general["data_version"], general["notes"], general["run_name"]) == ("2", "yes", "2024-01-01")


def test_data_check_header_only_file_exits_2(tmp_path):
    (tmp_path / "train.csv").write_text("fname,dialogue,summary,topic\n", encoding="utf-8")
    result = run_dsum("data", "check", str(tmp_path / "train.csv"), "--json")
    assert result.returncode == 2, (result.stdout, result.stderr)
    (report,) = json.loads(result.stdout)
    assert report["rows"] == 0 and [f["check"] for f in report["findings"]] == ["no_rows"]


def test_data_check_and_score_of_random_bytes_exit_2_without_traceback(tmp_path):
    import random

    paths = []
    for seed in range(20):  # the 7-bit files of seeds 10, 15 and 18 ended in a csv.Error traceback
        raw = random.Random(seed).randbytes(2000)
        for name, body in ((f"bytes{seed}.csv", raw), (f"ascii{seed}.csv", bytes(b & 0x7F for b in raw))):
            (tmp_path / name).write_bytes(body)
            paths.append(str(tmp_path / name))
    (tmp_path / "nul.csv").write_bytes(b'a,"b\x00')
    paths.append(str(tmp_path / "nul.csv"))
    result = run_dsum("data", "check", *paths, "--json")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    reports = json.loads(result.stdout)
    assert len(reports) == len(paths) and all(r["errors"] >= 1 for r in reports)
    for path in (tmp_path / "ascii10.csv", tmp_path / "nul.csv"):
        scored = run_dsum("score", "--pred", "data/sample/dev.csv", "--gold", str(path))
        assert scored.returncode == 2 and "Traceback" not in scored.stderr
        (line,) = scored.stderr.strip().splitlines()
        assert line.startswith(f"error: {path}: ")


def test_score_analyser_flag_and_its_old_name():
    args = ["score", "--pred", "data/sample/dev.csv", "--gold", "data/sample/dev.csv"]
    new = run_dsum(*args, "--analyser", "whitespace")
    old = run_dsum(*args, "--tokenizer", "whitespace")
    assert new.returncode == 0 and old.returncode == 0, (new.stderr, old.stderr)
    assert new.stdout == old.stdout
    assert new.stdout.startswith("score 100.00") and "analyser whitespace" in new.stdout


def cli_verbs() -> dict[str, str]:
    """Every verb a user can run (groups that only hold verbs left out) and its one-line help, as --help shows it."""
    import typer.main
    from rich.text import Text

    from dsum.cli import app, tidy_help

    tidy_help(app)
    verbs = {}

    def walk(group, prefix: str) -> None:
        for name in group.list_commands(None):
            command = group.get_command(None, name)
            nested = hasattr(command, "list_commands")
            if not nested or command.invoke_without_command:
                verbs[f"{prefix}{name}"] = Text.from_markup((command.help or "").split("\n\n")[0]).plain
            if nested:
                walk(command, f"{prefix}{name} ")

    walk(typer.main.get_command(app), "")
    return verbs


def test_the_readme_lists_every_verb_with_its_help_line():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("## The verbs", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    listed = {}
    for line in block.splitlines():
        verb, text = re.match(r"dsum (\S+(?: [a-z]+)?)\s{2,}(.*)", line).groups()
        listed[verb] = text
    assert listed == cli_verbs()
    table = readme.split("## The verbs", 1)[1].split("\n## ", 1)[0]
    for verb in cli_verbs():
        assert f"| `dsum {verb} " in table or f"| `dsum {verb}`" in table, verb  # and a row of details each


def test_help_shows_examples_whole_no_python_types_and_a_version():
    augment = run_dsum("augment", "--help", env={"COLUMNS": "200"})
    assert "(e.g. [data/train.csv, runs/augment/train_speaker-swap.csv])" in augment.stdout
    for verb in (["--help"], ["train", "--help"], ["data", "check", "--help"], ["predict", "--help"]):
        shown = run_dsum(*verb, env={"COLUMNS": "200"}).stdout
        assert not re.search(r"<(bool|str|int|path|float|list\[[^\]]*\])>", shown, re.I), (verb, shown)
    version = run_dsum("--version")
    assert version.returncode == 0 and re.fullmatch(r"dsum \d+\.\d+\S*\n", version.stdout)


def test_help_paragraphs_are_wrapped_once():
    """At 80 columns every line of a paragraph but its last reaches near the width (no ragged short lines)."""
    shown = run_dsum("train", "--help", env={"COLUMNS": "80"}).stdout
    prose = shown.split("╭", 1)[0]
    for paragraph in re.split(r"\n\s*\n", prose):
        lines = [line.rstrip() for line in paragraph.splitlines() if line.strip()]
        for line in lines[:-1]:
            assert len(line) > 60, (line, paragraph)


def test_runs_help_lists_every_status():
    from dsum.runs.read import STATUSES

    shown = run_dsum("runs", "--help", env={"COLUMNS": "300"}).stdout
    for status in STATUSES:
        assert f"{status}: " in shown


def test_config_show_shows_what_runs_and_score_json_is_unrounded():
    shown = yaml.safe_load(run_dsum("config", "show", "-c", "configs/demo.yaml", "--set", "training.epochs=3").stdout)
    assert "name" not in shown["model"] and shown["model"]["tiny"]["architecture"] == "bart"  # the tiny model runs
    assert shown["training"]["epochs"] == 3 and isinstance(shown["training"]["epochs"], int)
    assert run_dsum("config", "show", "-c", "configs/kobart.yaml").stdout.count("name: digit82/kobart-summarization") == 1
    # --json is unrounded for scripts (dsum inspect's tests compare it to 1e-12): rouge==1.0.1's F1 = 2PR/(P+R+1e-8).
    scored = json.loads(run_dsum("score", "--pred", "data/sample/dev.csv", "--gold", "data/sample/dev.csv", "--json").stdout)
    assert scored["score"] == pytest.approx(100 * 2 / (2 + 1e-8), rel=1e-12) and round(scored["score"], 2) == 100.0


def test_the_readme_names_every_config_section():
    from dsum.config.schema import Config

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    sentence = readme.split("\nSections: ", 1)[1].split(". Secrets", 1)[0]
    named = re.findall(r"`(\w+)`", re.sub(r"\([^()]*\)", "", sentence))  # outside the parentheses
    assert sorted(named) == sorted(Config.model_fields)


def test_export_refuses_an_existing_folder_before_loading_the_model(tmp_path):
    checkpoint = tmp_path / "checkpoint"  # a model folder whose weights would not load: the refusal comes first
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_dsum("export", str(checkpoint), str(out))
    assert result.returncode == 2
    assert result.stderr == f"error: {out} already exists: choose a new folder (an export never overwrites)\n"
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
