"""What a user reads while the demo recipes run: every stderr line is dsum's own (its progress displays, its
`warning:` lines) or on ALLOWED below; `-q` leaves the result lines alone. The commands ran once, in one fresh
interpreter (tests/conftest.py:demo_console); the runs are shared with tests/recipes/test_llm_finetune.py."""

import re

import pandas as pd
from conftest import REPO

# dsum's own stderr: the training display (dsum.verbs.train_progress), the generation bar (dsum.util.progress),
# and warnings/errors through the "dsum" logger's console handler.
OWN = [
    r"train\s.*\d+/\d+ steps\b.*",  # the rich training bar (its final state, when stderr is not a terminal)
    r"epoch [\d.]+ \(step \d+\): dev board score \d+\.\d\d \(R1 .*",  # one line per dev evaluation
    r"generate: +\d+%\|.*batch.*",  # the tqdm bar of generation
    r"(warning|error): .*",
]
# Third-party lines still allowed, each with its reason. None today: keep it short and explained.
ALLOWED: list[str] = []


def stderr_lines(text: str) -> list[str]:
    """Lines as a terminal would leave them: progress bars redraw with carriage returns."""
    return [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]


def foreign(text: str) -> list[str]:
    return [line for line in stderr_lines(text) if not any(re.fullmatch(p, line) for p in OWN + ALLOWED)]


def test_every_stderr_line_of_the_demo_commands_is_dsums_own(demo_console):
    for args in demo_console.commands:
        out, err = demo_console.printed(args)
        assert foreign(err) == [], (args[:3], err[-3000:])
        assert "Traceback" not in err and "Warning" not in err and "[transformers]" not in err


def test_plain_train_shows_one_progress_display_and_its_results(demo_console):
    out, err = demo_console.printed(demo_console.commands[0])
    run = demo_console.out / "runs/demo"
    assert "{'loss'" not in out and "{'loss'" not in err  # no Trainer log dicts
    evaluations = [line for line in stderr_lines(err) if line.startswith("epoch ")]
    log = pd.read_json(run / "train_log.jsonl", lines=True)
    scores = log["eval_board_score"].dropna().tolist()
    assert [float(re.search(r"dev board score ([\d.]+)", line).group(1)) for line in evaluations] == [
        round(s, 2) for s in scores
    ]
    assert sum(line.startswith("train ") for line in stderr_lines(err)) == 1
    assert out.strip().splitlines()[-1] == f"run directory: {run}"


def test_quiet_commands_print_their_result_lines_only(demo_console):
    predict, train = demo_console.commands[1], demo_console.commands[3]
    out, err = demo_console.printed(predict)
    assert err == ""
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("dev board score ") and lines[1] == f"dev predictions: {demo_console.out / 'demo-dev.csv'}"

    out, err = demo_console.printed(train)
    run = demo_console.out / "demo-llm"
    assert err == ""
    assert out.splitlines()[1:] == [f"submission: {run / 'submission.csv'}", f"run directory: {run}"]
    assert out.startswith("dev board score ")


def test_a_tied_layer_in_the_adapter_is_said_once_in_dsums_words(demo_console):
    out, err = demo_console.printed(demo_console.commands[5])
    assert "tie_word_embeddings" not in err and "peft" not in err
    assert "input embeddings and output layer are separate matrices" in out
    assert out.strip().splitlines()[-1] == f"exported: {demo_console.out / 'demo-llm-merged'}"


def test_export_merge_of_a_full_model_says_there_is_nothing_to_merge(demo_console):
    out, err = demo_console.printed(demo_console.commands[2])
    checkpoint = demo_console.out / "runs/demo/checkpoint-best"
    assert (out, err) == (
        f"--merge: {checkpoint} is a full model without LoRA adapters; it is exported as it is\n"
        f"exported: {demo_console.out / 'demo-export'}\n", "")
