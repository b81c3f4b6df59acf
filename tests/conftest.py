import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Tests never reach the network; transformers must not try the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# configs/demo.yaml made smaller still: tests train in seconds and still score and submit.
TINY = [
    "model.tiny.d_model=32",
    "model.tiny.layers=1",
    "model.tiny.ffn_dim=64",
    "model.tiny.vocab_size=800",
    "training.batch_size=8",
    "training.eval_batch_size=20",
    "training.epochs=2",
    "training.logging_steps=2",
    "generation.num_beams=2",
    "generation.max_new_tokens=30",
]


def demo_llm_overrides(out: Path, *extra: str) -> dict:
    """configs/demo-llm.yaml made smaller: trains in seconds, still evaluates by generation and submits."""
    settings = {
        "general.output_dir": str(out), "training.epochs": 2, "training.logging_steps": 2,
        "model.tiny.d_model": 32, "model.tiny.layers": 1, "model.tiny.ffn_dim": 64, "model.tiny.vocab_size": 800,
        "generation.max_new_tokens": 24, "training.eval_subset": 8,
    }
    settings.update(dict(item.split("=", 1) for item in extra))
    return settings


def input_dependent(model, seed: int = 1):
    """Weights of std 0.3, in eval mode: an untrained tiny model at its own init (0.02) writes the same
    summary for every dialogue, which would make any equality of outputs meaningless."""
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0, 0.3)
    return model.eval()


def tiny_overrides(tmp_path: Path, *extra: str) -> list[str]:
    return [f"general.output_dir={tmp_path / 'runs'}", *TINY, *extra]


def run_dsum(
    *args: str, cwd: Path = REPO, env: dict | None = None, timeout: int = 600, process: bool = False,
) -> subprocess.CompletedProcess:
    """`dsum ARGS` as a user types it: its exit code, stdout and stderr.

    In this process by default: dsum.cli.main, what `python -m dsum` runs, with the working folder, the
    environment and the streams of the call, so the suite pays the imports once (importing the Trainer
    alone costs ~13 s a process here). `process=True` starts a real `python -m dsum` for what only a
    fresh interpreter shows: the modules imported before a refusal, messages libraries print at import
    to a stream they keep, signals, torchrun.
    """
    if process:
        return subprocess.run(
            [sys.executable, "-m", "dsum", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, **(env or {})},
        )
    return run_in_process(list(args), cwd, env or {})


def run_in_process(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """dsum.cli.main on `args`; everything it changes (environment, verbosity, argv, folder) is put back."""
    import contextlib
    import io
    import traceback

    from dsum.cli import main
    from dsum.util.verbosity import ENV, set_verbosity

    saved_env, saved_argv = dict(os.environ), sys.argv
    out, err = io.StringIO(), io.StringIO()
    code = 0
    os.environ.update(env)
    sys.argv = ["dsum", *args]
    try:
        with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:  # click exits after every command, as the process would
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            except Exception:  # what the interpreter would print for an uncaught exception
                traceback.print_exc()
                code = 1
    finally:
        set_verbosity(saved_env.get(ENV, "normal"))  # -q / -v set it for the process
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
    return subprocess.CompletedProcess(["dsum", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (only the project's own CI has ../shared)")
    return SHARED_DATA


# Real-shaped decoder-only stand-ins (tests/standins.py): built once per session, shared by modules.
@pytest.fixture(scope="session")
def solar_standin(tmp_path_factory) -> Path:
    from standins import SOLAR, build_causal_standin

    return build_causal_standin(SOLAR, tmp_path_factory.mktemp("solar") / "standin")


@pytest.fixture(scope="session")
def qwen3_standin(tmp_path_factory) -> Path:
    from standins import QWEN3, build_causal_standin

    return build_causal_standin(QWEN3, tmp_path_factory.mktemp("qwen3") / "standin")


class DemoConsole:
    """What the demo and demo-llm commands printed, command by command: {args: (stdout, stderr)}; the runs' folder."""

    def __init__(self, out: Path, commands: list[list[str]], stdout: str, stderr: str):
        from console_session import MARK

        self.out, self.commands = out, commands

        def split(text: str) -> dict[str, str]:
            parts = text.split(MARK)[1:]
            return {part.split("\n", 1)[0]: part.split("\n", 1)[1] if "\n" in part else "" for part in parts}

        self.stdout, self.stderr = split(stdout), split(stderr)

    def printed(self, args: list[str]) -> tuple[str, str]:
        import json

        key = json.dumps(args)
        return self.stdout.get(key, ""), self.stderr.get(key, "")


@pytest.fixture(scope="session")
def demo_console(tmp_path_factory) -> DemoConsole:
    """The demo and demo-llm recipes (shrunk: TINY, demo_llm_overrides) as a user runs them: train, predict, export,
    some with -q, all in one fresh interpreter (tests/console_session.py). Runs: out/runs/demo, out/demo-llm."""
    import json

    from console_session import MARK

    out = tmp_path_factory.mktemp("console")
    demo = [item for setting in tiny_overrides(out) for item in ("--set", setting)]
    llm = [item for key, value in demo_llm_overrides(out).items() for item in ("--set", f"{key}={value}")]
    commands = [
        ["train", "-c", "configs/demo.yaml", *demo],
        ["-q", "predict", "-c", "configs/demo.yaml", *demo, "--checkpoint", str(out / "runs/demo"), "--split", "dev",
         "--out", str(out / "demo-dev.csv")],
        ["export", str(out / "runs/demo"), str(out / "demo-export"), "--merge"],  # a full model: --merge says so
        ["-q", "train", "-c", "configs/demo-llm.yaml", *llm],
        ["predict", "-c", "configs/demo-llm.yaml", *llm, "--checkpoint", str(out / "demo-llm"), "--split", "dev",
         "--out", str(out / "demo-llm-dev.csv")],
        ["export", str(out / "demo-llm"), str(out / "demo-llm-merged"), "--merge"],
    ]
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "console_session.py"), json.dumps(commands)], cwd=REPO,
        capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "100"},
    )
    (out / "stdout.txt").write_text(done.stdout)  # for a look when a test fails
    (out / "stderr.txt").write_text(done.stderr)
    assert done.returncode == 0 and f"{MARK}exit" not in done.stderr, done.stderr[-3000:]
    return DemoConsole(out, commands, done.stdout, done.stderr)


def pytest_collection_modifyitems(items):
    """tests/recipes holds end-to-end runs (training, tuning, folds, the notebook): each is marked `slow`;
    `make test-fast` runs tests/unit alone."""
    for item in items:
        if item.path.parent.name == "recipes":
            item.add_marker(pytest.mark.slow)
