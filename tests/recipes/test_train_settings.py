"""Training settings that were silently wrong: R-Drop under accumulation, precision, devices, early stopping, lengths."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO, TINY, run_dsum
from standins import KOBART
from transformers import TrainerControl, TrainerState, TrainingArguments

from dsum.config import load_config
from dsum.util.errors import UserError
from dsum.model.loading import load_model_and_tokenizer
from dsum.model.precision import resolve_precision
from dsum.data.text import special_tokens_for
from dsum.model.tokenization import framing_for, tokenize_examples
from dsum.util.distributed import init_distributed
from dsum.verbs.train import train
from dsum.verbs.trainer import DsumTrainer, early_stopping, make_collator


def test_rdrop_loss_is_scaled_for_gradient_accumulation(tmp_path):
    """Two micro-batches with 2 accumulation steps give the gradient of the whole batch's mean loss.

    Dropout 0 makes both R-Drop passes identical (KL 0), so its loss must equal the plain CE.
    """
    cfg = load_config(REPO / "configs/demo.yaml", TINY)
    sources = ["#Person1#: 안녕하세요\n#Person2#: 네 반가워요", "#Person1#: 어디 가요?", "#Person2#: 집에 가요", "#Person1#: 배고파요"]
    targets = ["#Person1#와 #Person2#가 인사합니다.", "#Person1#가 묻습니다.", "#Person2#는 집에 갑니다.", "배고픕니다 정말로 많이"]
    model, tokenizer = load_model_and_tokenizer(cfg.model, special_tokens_for(sources + targets), sources + targets)
    for module in model.modules():  # BART's layers keep their dropout rates as float attributes
        for attribute in ("dropout", "attention_dropout", "activation_dropout", "layerdrop"):
            if isinstance(getattr(module, attribute, None), float):
                setattr(module, attribute, 0.0)
    rows = tokenize_examples(tokenizer, framing_for(model.config, tokenizer), sources, targets, 64, 32).rows
    collate = make_collator(tokenizer, model)
    full = collate(rows)
    model.train()
    model.zero_grad()
    model(**full).loss.backward()  # the mean over every label token of the 4 examples
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    args = TrainingArguments(output_dir=str(tmp_path), gradient_accumulation_steps=2, report_to=[], use_cpu=True)
    trainer = DsumTrainer(model=model, args=args, train_dataset=rows, data_collator=collate, dev_evaluation=None, rdrop_alpha=1.0)
    trainer.current_gradient_accumulation_steps = 2
    micro = [collate(rows[:1]), collate(rows[1:])]  # unequal token counts: a mean per micro-batch would differ
    items = sum(int(m["labels"].ne(-100).sum()) for m in micro)
    model.zero_grad()
    losses = [trainer.training_step(model, m, num_items_in_batch=torch.tensor(items)) for m in micro]
    assert sum(float(loss.detach()) for loss in losses) == pytest.approx(float(model(**full).loss.detach()), rel=1e-5)
    for name, param in model.named_parameters():
        if name in expected:
            torch.testing.assert_close(param.grad, expected[name], rtol=1e-4, atol=1e-7)


def test_auto_precision_never_picks_fp16_for_t5(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # a T4 or V100
    assert resolve_precision("auto", "t5") == "fp32"
    assert resolve_precision("auto", "bart") == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "t5") == "bf16"


def test_generation_without_gpu_runs_fp32_whatever_training_asks():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert resolve_precision("fp16", "bart", training=False) == "fp32"


def test_each_rank_takes_its_gpu_before_the_first_collective(monkeypatch):
    """NCCL binds to the current device: set_device(LOCAL_RANK) must come before init_process_group.

    No GPU here, so CUDA's answers are stood in for; the real gloo path runs in test_train's torchrun test.
    """
    import torch.distributed as dist

    calls = []
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", device)))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: calls.append(("init", backend)))
    init_distributed()
    assert calls == [("set_device", 1), ("init", "nccl")]


def test_early_stopping_threshold_is_on_the_scores_scale():
    """0.001 on ROUGE's 0-1 scale (the organiser's value) is 0.1 board points: a 0.05 gain is no gain."""
    cfg = load_config(REPO / "configs/demo.yaml", ["training.early_stopping_patience=2", "training.early_stopping_threshold=0.001"])
    callback = early_stopping(cfg)
    args = TrainingArguments(output_dir="unused", metric_for_best_model="board_score", greater_is_better=True, report_to=[])
    state, control = TrainerState(), TrainerControl()
    state.best_metric = 30.0
    callback.check_metric_value(args, state, control, 30.05)
    assert callback.early_stopping_patience_counter == 1
    callback.check_metric_value(args, state, control, 30.2)
    assert callback.early_stopping_patience_counter == 0


@pytest.mark.parametrize(
    ("model", "setting", "limit"),
    [
        ("demo", "model.max_source_length=2000", "1024 positions"),
        ("kobart", "model.max_source_length=1100", "1026 positions"),
        ("kobart", "generation.max_new_tokens=1026", "1026 positions"),
    ],
)
def test_lengths_beyond_the_model_are_refused_before_any_work(tmp_path, model, setting, limit):
    overrides = [*TINY, f"general.output_dir={tmp_path / 'runs'}", setting]
    if model == "kobart":
        overrides += [f"model.name={KOBART}", "model.tiny=null"]
    cfg = load_config(REPO / "configs/demo.yaml", overrides)
    with pytest.raises(UserError, match=limit) as error:
        train(cfg)
    key = setting.split("=")[0]
    assert key in str(error.value)
    assert not (tmp_path / "runs").exists()  # nothing claimed, nothing written


def test_predict_names_what_it_expected_in_a_folder_without_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_dsum("predict", "-c", "configs/demo.yaml", "--checkpoint", str(tmp_path / "empty"), "--split", "dev",
                      process=True)  # transformers' import-time messages would show in a fresh interpreter
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "holds no model" in result.stderr and "config.json" in result.stderr
    assert "sentencepiece" not in result.stderr


def test_the_folds_of_one_pool_add_the_same_tokens_in_the_same_order(tmp_path):
    """Each fold sees the whole pool (its train + its held-out dev) and the test dialogues, so its
    models share one vocabulary: logit ensembles and weight averages of the folds need it."""
    import pandas as pd

    from dsum.data.splits import load_data

    pool = pd.read_csv(REPO / "data/sample/train.csv")
    pool.loc[0, "summary"] = "#Zed#와 #Zed#가 만납니다."  # a token only in a summary
    pool.loc[50, "dialogue"] = "#Person1#: #Bar#에게 전화해요.\n#Person2#: 네."
    pool.iloc[:40].to_csv(tmp_path / "a.csv", index=False)
    pool.iloc[40:].to_csv(tmp_path / "b.csv", index=False)
    tokens = []
    for train_file, dev_file in (("a.csv", "b.csv"), ("b.csv", "a.csv")):
        cfg = load_config(REPO / "configs/demo.yaml", [f"data.train=[{tmp_path / train_file}]", f"data.dev={tmp_path / dev_file}"])
        tokens.append(load_data(cfg).special_tokens)
    assert tokens[0] == tokens[1]
    assert tokens[0][-2:] == ["#Zed#", "#Bar#"]  # after the 15 standard ones: most frequent first


def test_greedy_decoding_trains_and_saves(tmp_path):
    """num_beams 1 with the default early_stopping: transformers refuses to save such a generation config."""
    cfg = load_config(REPO / "configs/demo.yaml", [*TINY, f"general.output_dir={tmp_path / 'runs'}", "training.epochs=1", "generation.num_beams=1"])
    run_dir = train(cfg)
    from transformers import GenerationConfig

    saved = GenerationConfig.from_pretrained(run_dir / "checkpoint-best")  # what transformers reloads
    assert saved.num_beams == 1 and saved.do_sample is False and saved.early_stopping is False
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"
    assert 0 <= json.loads((run_dir / "metrics.json").read_text())["dev"]["score"] <= 100
