"""Decoder-only LLMs with LoRA: framing and loss masks on the real SOLAR and Qwen3 tokenizers, batched
left-padded generation, adapters saved / reloaded / merged, the demo-llm recipe end to end, resume
after kill -9, and the errors a user can cause."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, demo_llm_overrides, input_dependent, run_dsum
from standins import QWEN3, SOLAR

from dsum.config import GenerationConfig, PromptConfig, load_config
from dsum.util.errors import UserError
from dsum.model.generate import GenerationStats, generate_summaries
from dsum.data.korean import foreign_script_ids, hangul_share, mostly_not_hangul
from dsum.model.tokenization import chat_framing, encode_chat_example, encode_prompt, load_tokenizer

PROMPT = PromptConfig(system="", user="요약: {dialogue}")
DIALOGUE, SUMMARY = "#Person1#: 안녕.", "#Person1#는 기분이 좋다."
DIALOGUES = [
    "#Person1#: 안녕하세요. 오늘 날씨가 좋네요.\n#Person2#: 네, 산책하기 좋은 날이에요.",
    "#Person1#: 이 바지 얼마예요?",
    "#Person1#: 내일 회의는 몇 시에 시작하나요?\n#Person2#: 오전 열 시요. #Person3#도 온대요.\n#Person1#: 알겠습니다.",
    "#Person2#: 전화번호는 #PhoneNumber#입니다.",
]


def test_solar_labels_are_the_summary_in_context_and_an_appended_eos():
    tokenizer = load_tokenizer(SOLAR)
    framing = chat_framing(tokenizer, PROMPT)
    example, cut_dialogue, cut_summary = encode_chat_example(tokenizer, framing, DIALOGUE, SUMMARY, 512, 100)
    # `<s>` ### User: ... ### Assistant:\n, then the summary: `#` is 28771 in context (422 `▁#` alone).
    assert example["input_ids"] == [
        1, 774, 1247, 28747, 13, 29517, 31160, 28747, 422, 14787, 28740, 28771, 28747, 28705, 30325, 238, 136, 152,
        28723, 13, 13, 27332, 21631, 28747, 13,
        28771, 14787, 28740, 28771, 29175, 28705, 29164, 30217, 29015, 28705, 31807, 29043, 28723, 2,
    ]
    assert example["labels"] == [-100] * 25 + example["input_ids"][25:]
    assert example["labels"][-1] == tokenizer.eos_token_id == 2  # SOLAR's template writes no </s>: appended
    assert (cut_dialogue, cut_summary) == (False, False)
    prompt_ids, _, _ = encode_prompt(tokenizer, framing, DIALOGUE, 512)
    assert example["input_ids"][: len(prompt_ids)] == prompt_ids  # generation sees exactly the trained prefix


def test_qwen3_labels_end_in_im_end_and_train_no_think_tokens():
    tokenizer = load_tokenizer(QWEN3)
    framing = chat_framing(tokenizer, PROMPT.model_copy(update={"template_options": {"enable_thinking": False}}))
    assert framing.end_of_turn == framing.stop_ids[0] == 151645  # <|im_end|>
    example, _, _ = encode_chat_example(tokenizer, framing, DIALOGUE, SUMMARY, 512, 100)
    think, end_think = tokenizer.convert_tokens_to_ids(["<think>", "</think>"])
    assert example["input_ids"][15:22] == [151644, 77091, 198, think, 271, end_think, 271]  # assistant + empty think, in the prompt
    assert example["labels"] == [-100] * 22 + [2, 10680, 16, 2, 16560, 54116, 79716, 12802, 125953, 13146, 13, 151645]
    assert think not in example["labels"] and end_think not in example["labels"]
    assert example["input_ids"][-1] == 151645  # the template's "\n" after <|im_end|> is not trained


def test_qwen3_default_thinking_template_is_refused_with_the_option_to_set():
    tokenizer = load_tokenizer(QWEN3)
    framing = chat_framing(tokenizer, PROMPT)
    with pytest.raises(UserError, match=r"<think>.*enable_thinking: false"):
        encode_chat_example(tokenizer, framing, DIALOGUE, SUMMARY, 512, 100)


def test_only_the_dialogue_is_cut_to_fit_the_prompt_length():
    tokenizer = load_tokenizer(SOLAR)
    framing = chat_framing(tokenizer, PROMPT)
    long = "#Person1#: 안녕하세요. 오늘은 정말 좋은 날이에요.\n" * 40
    ids, dialogue, cut = encode_prompt(tokenizer, framing, long, 120)
    assert cut and len(ids) <= 120 and long.startswith(dialogue)
    tail = framing.render(tokenizer, "|").split("|")[1]  # what the template writes after the dialogue
    assert tokenizer.decode(ids).endswith(tail)  # the template's end, where the answer starts, is whole
    example, cut_dialogue, _ = encode_chat_example(tokenizer, framing, long, SUMMARY, 120, 100)
    assert cut_dialogue and example["labels"][-1] == 2 and example["input_ids"][: len(ids)] == ids


def test_a_tokenizer_without_any_template_and_a_prompt_without_dialogue_are_user_errors(tmp_path):
    tokenizer = load_tokenizer(SOLAR)
    tokenizer.chat_template = None
    with pytest.raises(UserError, match="no chat template.*prompt.chat_template.*prompt.plain_template"):
        chat_framing(tokenizer, PROMPT)
    plain = chat_framing(tokenizer, PROMPT.model_copy(update={"plain_template": "{user}\n요약:\n"}))
    example, _, _ = encode_chat_example(tokenizer, plain, DIALOGUE, SUMMARY, 512, 100)
    assert example["labels"][-1] == 2 and tokenizer.decode(example["input_ids"]).startswith("<s> 요약: #Person1#")
    with pytest.raises(UserError, match=r"prompt.user must contain \{dialogue\}"):
        load_config(None, {"prompt.user": "대화를 요약하세요"})


@pytest.mark.parametrize("which", ["solar", "qwen3"])
def test_batched_left_padded_generation_equals_one_at_a_time(which, request):
    folder = request.getfixturevalue(f"{which}_standin")
    from dsum.model.loading import load_pretrained

    model, tokenizer = load_pretrained(folder)
    input_dependent(model)  # at its 0.02 init, 151k near-equal logits would tie
    assert tokenizer.padding_side == "left"  # set on every load: the files say otherwise for Qwen3
    prompt = PROMPT.model_copy(update={"template_options": {"enable_thinking": False} if which == "qwen3" else {}})
    gen = GenerationConfig(num_beams=1, no_repeat_ngram_size=0, max_new_tokens=12, repetition_penalty=1.1)
    stats = GenerationStats()
    batched = generate_summaries(model, tokenizer, DIALOGUES, gen, 4, 256, progress=False, prompt=prompt, stats=stats)
    single = [generate_summaries(model, tokenizer, [d], gen, 1, 256, progress=False, prompt=prompt)[0] for d in DIALOGUES]
    assert batched == single
    assert len(set(batched)) > 1  # the outputs depend on the dialogue
    assert sorted(stats.cut) == [0, 1, 2, 3]  # random weights never stop: every row hit max_new_tokens


def test_korean_checks_leave_the_data_tokens_alone():
    assert hangul_share("#Person1#이 #Person2#에게 전화한다.") == 1.0
    assert mostly_not_hangul("#Person1# calls #Person2# about the meeting.")
    assert not mostly_not_hangul("#Person1#은 Jim에게 회의 시간을 묻는다.")
    tokenizer = load_tokenizer(SOLAR)
    banned = set(foreign_script_ids(tokenizer, ["#Person1#", "#PhoneNumber#"]))
    assert tokenizer.convert_tokens_to_ids("▁meeting") in banned
    for piece in ("Person", "Phone", "Number", "#", "▁#"):
        assert tokenizer.convert_tokens_to_ids(piece) not in banned
    assert tokenizer.convert_tokens_to_ids("요") not in banned and tokenizer.eos_token_id not in banned


# --- the demo-llm recipe: a tiny qwen3 + LoRA, trained once for the tests below ---------------------


@pytest.fixture(scope="module")
def demo_llm_run(demo_console) -> tuple[Path, object]:
    """The shrunk demo-llm run that `dsum -q train` made in the session's console fixture (conftest.demo_console)."""
    cfg = load_config(REPO / "configs" / "demo-llm.yaml", demo_llm_overrides(demo_console.out))
    return demo_console.out / "demo-llm", cfg


def test_demo_llm_keeps_the_best_adapter_and_predict_reproduces_its_dev_score(demo_llm_run, tmp_path):
    from dsum.verbs.predict import predict
    from dsum.data.submission import check_submission

    run_dir, cfg = demo_llm_run
    best = run_dir / "checkpoint-best"
    assert (best / "adapter_config.json").is_file() and (best / "adapter_model.safetensors").is_file()
    assert not (best / "model.safetensors").exists()  # the adapter only: the base is run_dir/base
    assert json.loads((best / "adapter_config.json").read_text())["base_model_name_or_path"] == "../base"
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    evals = [entry for entry in log if "eval_board_score" in entry]
    assert len(evals) == 2  # evaluated by generation and the board's score, every epoch
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["best_epoch"] == max(evals, key=lambda e: e["eval_board_score"])["epoch"]
    assert check_submission(run_dir / "submission.csv", cfg.data.test, cfg.data.sample_submission) == []

    result = predict(cfg, run_dir, "dev", tmp_path / "dev.csv")
    assert result["score"] == pytest.approx(metrics["dev"]["score"], abs=1e-9)


def test_adapter_reload_and_merged_export_give_identical_outputs(demo_llm_run, tmp_path):
    from dsum.verbs.export import export_checkpoint
    from dsum.model.loading import load_pretrained

    run_dir, cfg = demo_llm_run
    gen = cfg.generation.model_copy(update={"max_new_tokens": 16})
    adapter_model, tokenizer = load_pretrained(run_dir / "checkpoint-best")
    with pytest.raises(UserError, match="--merge"):
        export_checkpoint(run_dir, tmp_path / "plain")
    merged_dir = export_checkpoint(run_dir, tmp_path / "merged", merge=True)
    assert (merged_dir / "model.safetensors").is_file() and not (merged_dir / "adapter_config.json").exists()
    merged, merged_tokenizer = load_pretrained(merged_dir)
    assert merged_tokenizer.chat_template == tokenizer.chat_template

    ids = torch.tensor([tokenizer("#Person1#: 안녕하세요. 오늘 뭐 해요?", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, adapter_model(ids).logits, rtol=1e-4, atol=1e-4)
    texts = [generate_summaries(m, tokenizer, DIALOGUES, gen, 4, 256, progress=False, prompt=cfg.prompt) for m in (adapter_model, merged)]
    assert texts[0] == texts[1]
    with pytest.raises(UserError, match="already exists"):
        export_checkpoint(run_dir, merged_dir, merge=True)


def test_paged_optimizer_on_a_cpu_is_refused_before_anything_is_written(tmp_path):
    # 4bit runs on the CPU (tests/recipes/test_real_weights.py trains with it); paged optimizers need CUDA.
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: paged optimizers are allowed here")
    result = run_dsum("train", "-c", "configs/demo-llm.yaml", "--set", f"general.output_dir={tmp_path}",
                      "--set", "lora.quantization=4bit", "--set", "training.optimizer=paged_adamw_8bit",
                      process=True)  # a fresh interpreter: bitsandbytes' import-time "kernels" line would show
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: training.optimizer=paged_adamw_8bit pages its state through CUDA memory and no CUDA GPU is visible: "
        "set training.optimizer: adamw_torch (or auto, which picks it on CUDA only)")
    assert "Traceback" not in result.stderr and "kernels" not in result.stderr
    assert not any(tmp_path.iterdir())


def test_every_recipe_validates():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        cfg = load_config(path)
        first = path.read_text(encoding="utf-8").splitlines()
        assert any(line.startswith("# Run: dsum") for line in first), f"{path.name} must open with the command that runs it"
    solar = load_config(REPO / "configs" / "solar-qlora.yaml")
    assert (solar.lora.r, solar.lora.alpha, solar.lora.dropout, solar.lora.quantization) == (16, 64, 0.1, "4bit")
    assert (solar.generation.num_beams, solar.generation.repetition_penalty, solar.generation.max_new_tokens) == (1, 1.1, 150)
    qwen = load_config(REPO / "configs" / "qwen3-lora.yaml")
    assert qwen.prompt.template_options == {"enable_thinking": False}
    assert cfg is not None


def test_resume_after_kill_continues_the_llm_run(tmp_path):
    overrides = demo_llm_overrides(tmp_path, "training.epochs=3", "training.eval_subset=4")
    args = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    crashed = subprocess.Popen(
        [sys.executable, "-m", "dsum", "train", "-c", "configs/demo-llm.yaml", *args],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 300
    while not list((tmp_path / "demo-llm/checkpoints").glob("checkpoint-*/trainer_state.json")):
        assert crashed.poll() is None and time.time() < deadline, "training ended before its first checkpoint"
        time.sleep(0.2)
    crashed.send_signal(signal.SIGKILL)
    crashed.wait()
    assert not (tmp_path / "demo-llm/metrics.json").exists()
    first = min(int(p.name.split("-")[1]) for p in (tmp_path / "demo-llm/checkpoints").glob("checkpoint-*"))

    resumed = run_dsum("train", "-c", "configs/demo-llm.yaml", "--resume", *args)
    assert resumed.returncode == 0, resumed.stderr
    assert not (tmp_path / "demo-llm-2").exists()
    log = [json.loads(line) for line in (tmp_path / "demo-llm/train_log.jsonl").read_text().splitlines()]
    steps = [entry["step"] for entry in log if "loss" in entry]
    assert steps == sorted(set(steps)) and steps[-1] > first  # continued past the checkpoint, no step twice
    metrics = json.loads((tmp_path / "demo-llm/metrics.json").read_text())
    assert metrics["epochs_trained"] == 3 and (tmp_path / "demo-llm/checkpoint-best/adapter_config.json").is_file()


def test_a_lora_section_trains_adapters_on_a_seq2seq_model_too(tmp_path):
    from dsum.verbs.predict import predict
    from dsum.verbs.train import train

    overrides = {
        "general.output_dir": str(tmp_path), "training.epochs": 1, "lora.r": 8, "generation.max_new_tokens": 20,
        "model.tiny.d_model": 32, "model.tiny.layers": 1, "model.tiny.ffn_dim": 64, "model.tiny.vocab_size": 800,
    }
    cfg = load_config(REPO / "configs" / "demo.yaml", overrides)
    run_dir = train(cfg)
    best = run_dir / "checkpoint-best"
    assert (best / "adapter_config.json").is_file() and not (best / "model.safetensors").exists()
    assert json.loads((best / "adapter_config.json").read_text())["task_type"] == "SEQ_2_SEQ_LM"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert predict(cfg, run_dir, "dev", tmp_path / "dev.csv")["score"] == pytest.approx(metrics["dev"]["score"], abs=1e-9)


def test_korean_only_regenerates_the_rows_not_in_hangul_with_other_scripts_banned(solar_standin, capsys):
    from dsum.data.files import Example
    from dsum.model.loading import load_pretrained
    from dsum.verbs.predict import summarize
    from dsum.data.text import special_tokens_for

    model, tokenizer = load_pretrained(solar_standin)
    input_dependent(model)  # random weights over SOLAR's mostly Latin vocabulary: mostly not Hangul
    settings = {"prompt.system": "", "prompt.user": PROMPT.user, "generation.num_beams": 1, "generation.max_new_tokens": 10}
    examples = [Example(fname=f"dev_{i}", dialogue=d, summaries=()) for i, d in enumerate(DIALOGUES)]
    plain = {f: texts[0] for f, texts in summarize(load_config(None, settings), model, tokenizer, examples, None, progress=False).items()}
    korean = summarize(load_config(None, {**settings, "generation.korean_only": True}), model, tokenizer, examples, None, progress=False)
    korean = {f: texts[0] for f, texts in korean.items()}
    foreign = [fname for fname, text in plain.items() if mostly_not_hangul(text)]
    assert foreign
    assert f"generation.korean_only: {len(foreign)} summaries mostly not in Hangul were generated again" in capsys.readouterr().out
    # Latin letters left in regenerated rows come only from the pieces of the data's #...# tokens.
    tag_letters = set("".join(special_tokens_for(DIALOGUES)))
    for fname in foreign:
        latin = {c for c in korean[fname] if c.isascii() and c.isalpha()}
        assert latin <= tag_letters, (fname, korean[fname])
    assert all(korean[f] == plain[f] for f in plain if f not in foreign)  # the others are untouched


def test_torchrun_two_processes_train_the_llm_adapters(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    overrides = demo_llm_overrides(tmp_path)
    del overrides["training.eval_subset"]  # all 20 dev rows, split between the ranks
    args = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    result = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "--master_port", "29518", "-m", "dsum", "train", "-c", "configs/demo-llm.yaml", *args],
        cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["demo-llm"]  # both ranks wrote into rank 0's directory
    run_dir = tmp_path / "demo-llm"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 10  # 80 examples / (batch 8 × 2 processes) × 2 epochs
    evals = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines() if "eval_board_score" in line]
    assert len(evals) == 2
    # Evaluation split dev's batches across the ranks and gathered them: the same score as the final dev pass.
    assert metrics["dev"]["score"] == pytest.approx(max(e["eval_board_score"] for e in evals), abs=1e-6)
    assert (run_dir / "checkpoint-best" / "adapter_config.json").is_file()


@pytest.mark.parametrize("which", ["solar", "qwen3"])
def test_a_stand_in_adapter_reloads_and_merges_with_identical_outputs(which, request, tmp_path):
    from dsum.config import LoraConfig
    from dsum.verbs.export import export_checkpoint
    from dsum.model.loading import load_pretrained, wrap_lora

    folder = request.getfixturevalue(f"{which}_standin")
    model, tokenizer = load_pretrained(folder)
    input_dependent(model)
    model.save_pretrained(tmp_path / "base")  # the redrawn weights are this test's base
    tokenizer.save_pretrained(tmp_path / "base")
    model = wrap_lora(model, LoraConfig(r=4, alpha=8, dropout=0.0), base=str(tmp_path / "base"))
    torch.manual_seed(2)
    with torch.no_grad():  # B starts at zero (the adapter would change nothing): give it weights
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    model.save_pretrained(tmp_path / "adapter")
    tokenizer.save_pretrained(tmp_path / "adapter")

    prompt = PROMPT.model_copy(update={"template_options": {"enable_thinking": False} if which == "qwen3" else {}})
    gen = GenerationConfig(num_beams=1, no_repeat_ngram_size=0, max_new_tokens=10)
    expected = generate_summaries(model, tokenizer, DIALOGUES, gen, 4, 256, progress=False, prompt=prompt)
    reloaded, reloaded_tokenizer = load_pretrained(tmp_path / "adapter")
    assert generate_summaries(reloaded, reloaded_tokenizer, DIALOGUES, gen, 4, 256, progress=False, prompt=prompt) == expected
    merged, merged_tokenizer = load_pretrained(export_checkpoint(tmp_path / "adapter", tmp_path / "merged", merge=True))
    assert generate_summaries(merged, merged_tokenizer, DIALOGUES, gen, 4, 256, progress=False, prompt=prompt) == expected
    ids = torch.tensor([tokenizer("#Person1#: 안녕하세요.", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, model(ids).logits, rtol=1e-4, atol=1e-4)
    base_texts = generate_summaries(load_pretrained(tmp_path / "base")[0], tokenizer, DIALOGUES, gen, 4, 256, progress=False, prompt=prompt)
    assert base_texts != expected  # the adapter changes what the model writes
