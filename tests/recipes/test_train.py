"""Training and prediction end to end on tiny models and the bundled sample (CPU, offline)."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pandas
import pytest
import torch
from conftest import REPO, TINY, input_dependent, run_dsum, tiny_overrides

from dsum.config import load_config
from dsum.data.files import read_examples, reference_map
from dsum.util.errors import UserError
from dsum.model.generate import generate_summaries, generation_kwargs, length_batches
from dsum.metric.rouge import score_texts
from dsum.model.loading import build_tiny_model, load_model_and_tokenizer, train_tokenizer
from dsum.model.precision import resolve_precision
from dsum.data.submission import check_submission
from dsum.data.text import STANDARD_SPECIAL_TOKENS, special_tokens_for
from dsum.model.tokenization import SummaryDecoder, add_data_tokens, encode_sources, framing_for, tokenize_examples
from dsum.verbs.train import train
from dsum.verbs.trainer import make_collator

SAMPLE = REPO / "data" / "sample"
def sample_texts():
    examples = read_examples(SAMPLE / "train.csv")
    return [ex.dialogue for ex in examples] + [ex.summaries[0] for ex in examples]


def test_special_tokens_are_never_split():
    cfg = load_config(REPO / "configs/demo.yaml", TINY)
    texts = sample_texts()
    tokens = special_tokens_for(texts)
    model, tokenizer = load_model_and_tokenizer(cfg.model, tokens, train_texts=texts)
    assert set(STANDARD_SPECIAL_TOKENS) <= set(tokens)
    for token in STANDARD_SPECIAL_TOKENS:
        ids = tokenizer(f"{token}: 안녕하세요 {token}는 #Person9#에게", add_special_tokens=False)["input_ids"]
        assert ids.count(tokenizer.convert_tokens_to_ids(token)) == 2, (token, tokenizer.convert_ids_to_tokens(ids))
        ids = tokenizer(f"{token}는 왔다")["input_ids"]
        assert tokenizer.convert_tokens_to_ids(token) in ids
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)


def test_local_pretrained_folder_gets_special_tokens_added(tmp_path):
    """A hub-style model saved without the PII tokens: they are added and the embeddings resized."""
    cfg = load_config(REPO / "configs/demo.yaml", TINY)
    bare = train_tokenizer(sample_texts(), cfg.model.tiny)
    add_data_tokens(bare, ["#Person1#", "#Person2#"])
    build_tiny_model(cfg.model.tiny, bare).save_pretrained(tmp_path / "kobart-like")
    bare.save_pretrained(tmp_path / "kobart-like")
    local = load_config(REPO / "configs/kobart.yaml", [f"model.name={tmp_path / 'kobart-like'}"])
    model, tokenizer = load_model_and_tokenizer(local.model, list(STANDARD_SPECIAL_TOKENS))
    assert len(tokenizer) == len(bare) + 13
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert tokenizer("#CarNumber#", add_special_tokens=False)["input_ids"] == [tokenizer.convert_tokens_to_ids("#CarNumber#")]


def test_labels_padded_with_minus_100_and_truncation_counted():
    cfg = load_config(REPO / "configs/demo.yaml", TINY)
    texts = sample_texts()
    model, tokenizer = load_model_and_tokenizer(cfg.model, special_tokens_for(texts), train_texts=texts)
    sources, targets = ["#Person1#: 안녕 " * 40, "#Person2#: 네"], ["짧은 요약", "조금 더 긴 요약 문장입니다 " * 10]
    framing = framing_for(model.config, tokenizer)
    features = tokenize_examples(tokenizer, framing, sources, targets, max_source=32, max_target=16)
    assert features.truncated_sources == 1 and features.truncated_targets == 1
    assert max(len(r["input_ids"]) for r in features.rows) == 32
    assert all(r["labels"][-1] == tokenizer.eos_token_id for r in features.rows)  # truncated ones too
    assert all(r["input_ids"][0] == tokenizer.bos_token_id and r["input_ids"][-1] == tokenizer.eos_token_id for r in features.rows)
    batch = make_collator(tokenizer, model)(features.rows)
    labels = batch["labels"]
    assert labels.shape == (2, 16)  # padded to the batch's longest label, not to a fixed 100
    short = len(features.rows[0]["labels"])
    assert (labels[0, short:] == -100).all() and (labels[0, :short] != -100).all()
    assert (labels != tokenizer.pad_token_id).all()  # no pad id is left for the loss to learn
    assert batch["input_ids"].shape[1] == 32


def test_sorted_generation_equals_unsorted():
    cfg = load_config(REPO / "configs/demo.yaml", TINY)
    texts = sample_texts()
    model, tokenizer = load_model_and_tokenizer(cfg.model, special_tokens_for(texts), train_texts=texts)
    model = input_dependent(model)  # at its own init it writes one summary for every row: equality would prove nothing
    dialogues = [ex.dialogue for ex in read_examples(SAMPLE / "dev.csv")][:12]
    sorted_out = generate_summaries(model, tokenizer, dialogues, cfg.generation, 4, 512, progress=False)
    one_by_one = [generate_summaries(model, tokenizer, [d], cfg.generation, 1, 512, progress=False)[0] for d in dialogues]
    assert sorted_out == one_by_one
    assert len(set(sorted_out)) == 12
    assert all("<s>" not in s and "</s>" not in s and "<pad>" not in s for s in sorted_out)


@pytest.mark.parametrize("architecture", ["bart", "t5"])
def test_generation_equals_plain_generate(architecture):
    """generate_summaries (sorted, token-budget batches, cross-attention cache kept on beam reorders)
    gives what a plain model.generate gives for each dialogue alone."""
    cfg = load_config(REPO / "configs/demo.yaml", [*TINY, f"model.tiny.architecture={architecture}", "generation.num_beams=3"])
    texts = sample_texts()
    model, tokenizer = load_model_and_tokenizer(cfg.model, special_tokens_for(texts), train_texts=texts)
    model = input_dependent(model)
    dialogues = [ex.dialogue for ex in read_examples(SAMPLE / "dev.csv")][:10]
    ours = generate_summaries(model, tokenizer, dialogues, cfg.generation, 4, 512, progress=False)
    plain = []
    framing = framing_for(model.config, tokenizer)
    decode = SummaryDecoder(tokenizer, framing)
    with torch.inference_mode():
        for ids in encode_sources(tokenizer, framing, dialogues, 512)[0]:
            output = model.generate(torch.tensor([ids]), **generation_kwargs(cfg.generation))
            plain.extend(decode(output.tolist()))
    assert ours == plain
    assert len(set(ours)) == 10  # every dialogue its own summary


def test_token_budget_batches_sizes():
    # budget 2 × 100 = 200 tokens at each batch's longest; never below 2 rows, never above 4 × 2
    lengths = [100, 10, 50, 40, 99, 30, 20, 25, 12, 11, 60, 5]
    assert length_batches(lengths, 2, 100, by_tokens=False) == [[0, 4], [10, 2], [3, 5], [7, 6], [8, 9], [1, 11]]
    # longest 100 → 2 rows; longest 60 → 3; longest 30 → 6; then the last one
    assert length_batches(lengths, 2, 100) == [[0, 4], [10, 2, 3], [5, 7, 6, 8, 9, 1], [11]]


def test_token_budget_generation_equals_fixed_batches():
    cfg = load_config(REPO / "configs/demo.yaml", TINY)
    texts = sample_texts()
    model, tokenizer = load_model_and_tokenizer(cfg.model, special_tokens_for(texts), train_texts=texts)
    model = input_dependent(model)
    dialogues = [ex.dialogue for ex in read_examples(SAMPLE / "dev.csv")]
    assert cfg.generation.batch_by_tokens  # the default
    lengths = [len(ids) for ids in encode_sources(tokenizer, framing_for(model.config, tokenizer), dialogues, 512)[0]]
    sizes = [len(b) for b in length_batches(lengths, 3, 512)]
    assert sum(sizes) == 20 and max(sizes) > 3  # short dialogues do go in bigger batches
    budget = generate_summaries(model, tokenizer, dialogues, cfg.generation, 3, 512, progress=False)
    fixed_cfg = cfg.generation.model_copy(update={"batch_by_tokens": False})
    fixed = generate_summaries(model, tokenizer, dialogues, fixed_cfg, 3, 512, progress=False)
    assert budget == fixed
    assert len(set(budget)) == 20


def test_fp16_without_gpu_is_a_user_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        resolve_precision("fp16")
    assert resolve_precision("auto") == "fp32"
    # KoBART's real config (bundled): the GPU is refused before any model is loaded.
    result = run_dsum("train", "-c", "configs/kobart.yaml", "--set", f"model.name={REPO / 'tests/models/digit82__kobart-summarization'}")
    assert result.returncode == 2
    assert "needs a CUDA GPU" in result.stderr and "Traceback" not in result.stderr


def test_demo_run_directory(demo_console):
    """The shrunk demo that `dsum train` and `dsum -q predict` ran in the session's console fixture (conftest)."""
    tmp_path = demo_console.out
    cfg = load_config(REPO / "configs/demo.yaml", tiny_overrides(tmp_path))
    run_dir = tmp_path / "runs" / "demo"
    for name in ("config.yaml", "metrics.json", "dev_predictions.csv", "submission.csv", "train_log.jsonl", "environment.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "checkpoint-best" / "config.json").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 20  # 80 examples / batch 8 × 2 epochs
    # The dev score in metrics.json is the mean of the per-row scores written beside it.
    rows = pd.read_csv(run_dir / "dev_predictions.csv", keep_default_na=False)
    assert len(rows) == 20 and metrics["dev"]["rows"] == 20
    assert rows["score"].mean() == pytest.approx(metrics["dev"]["score"], abs=1e-9)
    rescored = score_texts(dict(zip(rows["fname"], rows["prediction"])), reference_map(read_examples(SAMPLE / "dev.csv")))
    assert rescored.score == pytest.approx(metrics["dev"]["score"], abs=1e-9)
    # The best eval score seen during training is the one the kept checkpoint reproduces.
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    best_eval = max(entry["eval_board_score"] for entry in log if "eval_board_score" in entry)
    assert metrics["dev"]["score"] == pytest.approx(best_eval, abs=1e-6)
    assert check_submission(run_dir / "submission.csv", SAMPLE / "test.csv", SAMPLE / "sample_submission.csv") == []
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["packages"]["transformers"] and str(SAMPLE.relative_to(REPO) / "dev.csv") in env["data_sha256"]

    # `dsum predict` from the saved run (its checkpoint-best) gives the same dev score.
    out = tmp_path / "demo-dev.csv"
    printed, _ = demo_console.printed(demo_console.commands[1])
    assert printed.startswith(f"dev board score {metrics['dev']['score']:.2f}")
    dev_file = pandas.read_csv(out)  # a dev split writes predictions beside their references, not a submission
    assert list(dev_file["fname"]) == [ex.fname for ex in read_examples(SAMPLE / "dev.csv")]
    assert {"prediction", "reference", "rouge1"} <= set(dev_file.columns) and dev_file["prediction"].str.len().min() > 0

    # A second run with the same name never overwrites the first.
    assert train(cfg.model_copy(update={"training": cfg.training.model_copy(update={"epochs": 1})})).name == "demo-2"


def _train_process(tmp_path: Path, *extra: str) -> subprocess.Popen:
    args = sum([["--set", o] for o in tiny_overrides(tmp_path, "training.epochs=4", "training.logging_steps=1", *extra)], [])
    return subprocess.Popen(
        [sys.executable, "-m", "dsum", "train", "-c", "configs/demo.yaml", *args],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def _trainer_state(run_dir: Path) -> dict:
    last = max(run_dir.glob("checkpoints/checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return json.loads((last / "trainer_state.json").read_text())


def _wait_for(process: subprocess.Popen, ready) -> None:
    deadline = time.time() + 300
    while not ready():
        assert process.poll() is None and time.time() < deadline, "training ended before the moment the test waits for"
        time.sleep(0.2)


def _logged_steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.is_file() else []


def test_resume_after_sigterm_and_kill_matches_uninterrupted_run(tmp_path):
    """SIGTERM mid-epoch (a saved checkpoint at the next step, exit 143), a resume killed with SIGKILL after
    its first epoch's checkpoint, a second resume: the loss curve, step by step, is the uninterrupted run's."""
    straight = _train_process(tmp_path / "a")
    _, err = straight.communicate(timeout=600)
    assert straight.returncode == 0, err

    run_dir = tmp_path / "b/runs/demo"
    args = ["train", "-c", "configs/demo.yaml", *sum([["--set", o] for o in tiny_overrides(tmp_path / "b", "training.epochs=4", "training.logging_steps=1")], [])]
    # SIGTERM to this process (in-process run, a real signal) once step 3 is logged, as a scheduler sends it.
    done = threading.Event()

    def terminate_after_step_3():
        while not done.wait(0.1):
            if any(step >= 3 for step in _logged_steps(run_dir / "train_log.jsonl")):
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=terminate_after_step_3, daemon=True).start()
    try:
        stopped = run_dsum(*args)
    finally:
        done.set()
    assert stopped.returncode == 143, stopped.stderr
    line, = re.findall(r"stopped: [^\r\n]*", stopped.stderr)
    step = int(re.match(r"stopped: SIGTERM received: checkpoint-(\d+) saved", line).group(1))
    assert 3 <= step < 10 and json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == [f"checkpoint-{step}"]

    crashed = subprocess.Popen(
        [sys.executable, "-m", "dsum", *args, "--resume"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(crashed, lambda: (run_dir / "checkpoints/checkpoint-10/manifest.json").is_file())
    crashed.send_signal(signal.SIGKILL)
    crashed.wait()
    assert not (run_dir / "metrics.json").exists()
    # A line the killed process logged after its last checkpoint: the resumed run logs that step again.
    with open(run_dir / "train_log.jsonl", "a") as log:
        log.write(json.dumps({"step": 39, "epoch": 3.9, "loss": 123.0}) + "\n")

    resumed = run_dsum("train", "-c", "configs/demo.yaml", "--resume",
                       *sum([["--set", o] for o in tiny_overrides(tmp_path / "b", "training.epochs=4", "training.logging_steps=1")], []))
    assert resumed.returncode == 0, resumed.stderr
    assert not (tmp_path / "b/runs/demo-2").exists()  # resumed in place, not a new run

    a, b = _trainer_state(tmp_path / "a/runs/demo"), _trainer_state(run_dir)
    assert a["global_step"] == b["global_step"] == 40
    losses_a = [(h["step"], h["loss"]) for h in a["log_history"] if "loss" in h]
    losses_b = [(h["step"], h["loss"]) for h in b["log_history"] if "loss" in h]
    assert [s for s, _ in losses_a] == [s for s, _ in losses_b] == list(range(1, 41))
    assert [l for _, l in losses_a] == pytest.approx([l for _, l in losses_b], rel=1e-4)
    log_a, log_b = ([json.loads(line) for line in (tmp_path / x / "runs/demo/train_log.jsonl").read_text().splitlines()] for x in "ab")
    steps_b = [entry["step"] for entry in log_b if "loss" in entry]
    assert steps_b == sorted(set(steps_b))  # no step twice in the curves
    assert [e["step"] for e in log_a if "loss" in e] == steps_b
    assert [e["loss"] for e in log_a if "loss" in e] == pytest.approx([e["loss"] for e in log_b if "loss" in e], rel=1e-4)
    metrics_a = json.loads((tmp_path / "a/runs/demo/metrics.json").read_text())
    metrics_b = json.loads((tmp_path / "b/runs/demo/metrics.json").read_text())
    assert metrics_a["dev"]["score"] == pytest.approx(metrics_b["dev"]["score"], abs=1e-6)


def test_resume_without_checkpoint_is_a_user_error(tmp_path):
    result = run_dsum("train", "-c", "configs/demo.yaml", "--resume", "--set", f"general.output_dir={tmp_path}")
    assert result.returncode == 2 and "no checkpoint" in result.stderr and "Traceback" not in result.stderr


def test_torchrun_two_processes_on_cpu(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    args = sum([["--set", o] for o in tiny_overrides(tmp_path)], [])
    result = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "--master_port", "29517", "-m", "dsum", "train", "-c", "configs/demo.yaml", *args],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "runs").iterdir())
    assert [p.name for p in runs] == ["demo"]  # both ranks wrote into the one directory rank 0 chose
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["global_step"] == 10  # 80 examples / (batch 8 × 2 processes) × 2 epochs
    rows = pd.read_csv(runs[0] / "dev_predictions.csv", keep_default_na=False)
    assert len(rows) == 20 and rows["score"].mean() == pytest.approx(metrics["dev"]["score"], abs=1e-9)
    evals = [json.loads(l) for l in (runs[0] / "train_log.jsonl").read_text().splitlines() if "eval_board_score" in l]
    assert len(evals) == 2  # one eval per epoch, logged once (rank 0), on all 20 dev rows
    assert metrics["dev"]["score"] == pytest.approx(max(e["eval_board_score"] for e in evals), abs=1e-6)
