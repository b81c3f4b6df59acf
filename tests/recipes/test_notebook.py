"""examples/quickstart.ipynb, executed by a real Jupyter kernel running this venv's Python.

Everything the notebook writes goes to a temporary folder (DSUM_EXAMPLE_OUTPUT); the test checks
the outputs a reader would look at: the data check, a figure, the training's dev score, the score
and the submission check.
"""

import importlib.util
import json
import re
import sys

import nbformat
import pytest
from conftest import REPO
from nbclient import NotebookClient

NOTEBOOK = REPO / "examples" / "quickstart.ipynb"


def text_of(cell) -> str:
    """Everything a cell printed (stdout, stderr) and the text of its displayed values."""
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            parts.append(output["text"])
        elif output["output_type"] in ("execute_result", "display_data"):
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def tagged(nb, tag: str):
    (cell,) = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    return cell


@pytest.fixture
def kernel_name(tmp_path, monkeypatch) -> str:
    """A kernelspec for this interpreter in a temporary Jupyter path, whatever ~/.local/share/jupyter holds."""
    from ipykernel.kernelspec import install

    install(prefix=str(tmp_path / "jupyter"), kernel_name="dsum-test")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter" / "share" / "jupyter"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # leave the user's profile alone
    return "dsum-test"


def test_quickstart_notebook_runs_end_to_end(tmp_path, monkeypatch, kernel_name):
    out = tmp_path / "out"
    monkeypatch.setenv("DSUM_EXAMPLE_OUTPUT", str(out))
    examples_before = sorted(p.name for p in NOTEBOOK.parent.iterdir())
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), "commit the notebook without outputs"

    NotebookClient(nb, kernel_name=kernel_name, timeout=600, resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()

    first = text_of(nb.cells[1])
    assert f"project root: {REPO} | python: {sys.executable}" in first  # the kernel is this venv's interpreter

    error = text_of(tagged(nb, "user-error"))
    assert "unknown key 'training.learnig_rate'" in error and "did you mean 'learning_rate'" in error

    check = text_of(tagged(nb, "data-check"))
    for name in ("train.csv", "dev.csv", "test.csv", "sample_submission.csv"):
        assert str(REPO / "data" / "sample" / name) in check  # the config's paths, resolved from examples/

    eda = tagged(nb, "eda")
    images = [o for o in eda.outputs if o["output_type"] == "display_data" and "image/png" in o["data"]]
    assert len(images) == 3
    assert str(out / "eda" / "report.html") in text_of(eda)
    assert (out / "eda" / "eda.json").is_file()

    train = text_of(tagged(nb, "train"))
    # The display prints one line per dev evaluation; the run's score (metrics.json) is the best of them.
    evaluations = re.findall(r"dev board score (\d+\.\d\d)", train)
    assert evaluations, train
    assert str(out / "demo") in train  # the run directory the cell returns
    run_dir = out / "demo"
    assert (run_dir / "checkpoint-best").is_dir() and (run_dir / "metrics.json").is_file()

    scored = re.search(r"dev board score (\d+\.\d\d) .*; 20 rows\)", text_of(tagged(nb, "score")))
    run_score = f"{json.loads((run_dir / 'metrics.json').read_text())['dev']['score']:.2f}"
    assert run_score == max(evaluations, key=float)
    assert scored and scored.group(1) == run_score  # predict + score == the run's own dev score
    assert (run_dir / "dev_predict.csv").is_file()

    runs = text_of(tagged(nb, "runs"))
    assert "demo" in runs and "finished" in runs

    submission = text_of(tagged(nb, "submission"))
    assert submission.strip() == f"{run_dir / 'submission.csv'} is a well-formed submission"

    # Progress displays: no "install ipywidgets" warning at every refresh of rich's live display.
    stderr = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stderr")
    assert 'install "ipywidgets"' not in stderr
    assert "\x1b[2K" not in stderr  # no live redraws written as escape codes (ipykernel sets FORCE_COLOR)
    if importlib.util.find_spec("ipywidgets") is not None:
        assert "IProgress not found" not in stderr  # tqdm.auto draws notebook bars

    # Nothing written in the repo: the notebook went unsaved, its outputs went to tmp_path.
    assert sorted(p.name for p in NOTEBOOK.parent.iterdir()) == examples_before
    assert not (NOTEBOOK.parent / "runs").exists() and not (NOTEBOOK.parent / "reports").exists()
