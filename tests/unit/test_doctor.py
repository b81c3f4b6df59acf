"""`dsum doctor`: each pre-experiment check on real files, models and environments (CPU, offline)."""

import os
import pytest
import torch
from conftest import REPO, TINY, run_dsum

from dsum.config import load_config
from dsum.data.files import read_examples
from dsum.verbs.doctor import (
    FAIL,
    OK,
    WARN,
    check_analyser,
    check_data,
    check_disk,
    check_gpu,
    check_model,
    check_tokenizer,
    check_tracking,
    parameter_count,
)
from dsum.model.loading import build_tiny_model, train_tokenizer
from standins import KOBART, PKO_T5

WIDE = {"COLUMNS": "250"}  # one table row per line


def _mark_line(stdout: str, check: str) -> str:
    return next(line for line in stdout.splitlines() if f" {check} " in line)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_kobart_recipe_without_gpu_fails():
    result = run_dsum("doctor", "-c", "configs/kobart.yaml", env=WIDE)
    assert result.returncode == 1, result.stdout + result.stderr
    gpu = _mark_line(result.stdout, "GPU")
    assert "✗" in gpu and "training.precision=fp16 needs one" in gpu
    assert "✗" in _mark_line(result.stdout, "data") and "data/train.csv" in result.stdout
    assert "✗" in _mark_line(result.stdout, "model")  # not cached, hub unreachable from tests
    assert "✓" in _mark_line(result.stdout, "config")


def test_demo_recipe_passes():
    result = run_dsum("doctor", "-c", "configs/demo.yaml", env=WIDE)
    assert result.returncode == 0, result.stdout + result.stderr
    for check in ("config", "data", "model", "tracking", "disk", "analyser"):
        assert "✓" in _mark_line(result.stdout, check), check
    assert "train.csv 80, dev.csv 20, test.csv 20, sample_submission.csv 20" in result.stdout
    assert "안녕 / 하 / 세요" in result.stdout


def test_invalid_config_is_a_user_error():
    result = run_dsum("doctor", "-c", "configs/demo.yaml", "--set", "training.learnin_rate=1")
    assert result.returncode == 2 and "did you mean 'learning_rate'" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_gpu_check_on_cpu():
    assert check_gpu("fp16").level == FAIL and check_gpu("bf16").level == FAIL
    auto = check_gpu("auto")
    assert auto.level == WARN and "fp32 on CPU, slow" in auto.detail


def test_data_errors_fail(tmp_path):
    broken = tmp_path / "dev.csv"
    broken.write_text("fname,summary\ndev_0,요약\n", encoding="utf-8")
    check = check_data(load_config(REPO / "configs/demo.yaml", [f"data.dev={broken}"]))
    assert check.level == FAIL and "missing column(s) dialogue" in check.detail
    gone = check_data(load_config(REPO / "configs/demo.yaml", [f"data.test={tmp_path / 'nope.csv'}"]))
    assert gone.level == FAIL and gone.detail == f"missing: {tmp_path / 'nope.csv'}"


def test_model_from_local_folder_and_unreachable_hub(tmp_path):
    cfg = load_config(REPO / "configs/demo.yaml", TINY)
    examples = read_examples(REPO / "data/sample/train.csv")
    tokenizer = train_tokenizer([ex.dialogue for ex in examples], cfg.model.tiny)
    model = build_tiny_model(cfg.model.tiny, tokenizer)
    model.save_pretrained(tmp_path / "local")
    local = load_config(REPO / "configs/kobart.yaml", [f"model.name={tmp_path / 'local'}"]).model
    assert check_model(local).level == OK
    # The parameter count read from config.json is the model's own.
    assert parameter_count(local) == (sum(p.numel() for p in model.parameters()), "from the model's config.json")

    (tmp_path / "empty").mkdir()
    empty = check_model(load_config(REPO / "configs/kobart.yaml", [f"model.name={tmp_path / 'empty'}"]).model)
    assert empty.level == FAIL and "no config.json" in empty.detail
    hub = check_model(load_config(REPO / "configs/kobart.yaml", ["model.name=someone/not-downloaded-model"]).model)
    assert (hub.level, hub.detail) == (FAIL, "someone/not-downloaded-model: HF_HUB_OFFLINE is set and it is not in the cache")
    assert parameter_count(load_config(REPO / "configs/kobart.yaml").model) == (124_000_000, "model config not at hand: assumed KoBART size")


def test_disk_check_against_checkpoint_estimate():
    cfg = load_config(REPO / "configs/demo.yaml")
    params, _ = parameter_count(cfg.model)
    ok = check_disk(cfg)
    assert ok.level == OK and f"{params / 1e6:.1f}M params" in ok.detail and "3 × " in ok.detail
    # Ten million kept checkpoints of this model do not fit on any disk.
    huge = check_disk(load_config(REPO / "configs/demo.yaml", ["training.save_total_limit=10000000"]))
    assert huge.level == FAIL


def test_tracking_modes(monkeypatch, tmp_path):
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    wandb = load_config(REPO / "configs/demo.yaml", ["tracking.backend=wandb"])
    assert check_tracking(load_config(REPO / "configs/demo.yaml")).detail == "tracking off (tracking.backend=none)"
    no_key = check_tracking(wandb)
    assert no_key.level == WARN and "no API key" in no_key.detail and "wandb sync" in no_key.detail

    key = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("WANDB_API_KEY", key)
    online = check_tracking(wandb)
    assert online.level == OK and "key from WANDB_API_KEY" in online.detail and key not in online.detail
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert check_tracking(wandb).level == WARN

    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.delenv("WANDB_MODE")
    (tmp_path / "netrc").write_text(f"machine api.wandb.ai\n  login user\n  password {key}\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    netrc_login = check_tracking(wandb)
    assert netrc_login.level == OK and str(tmp_path / "netrc") in netrc_login.detail and key not in netrc_login.detail


def test_analysers():
    assert check_analyser("mecab").detail == "mecab: 안녕하세요 → 안녕 / 하 / 세요"
    kiwi = check_analyser("kiwi")
    assert kiwi.level == OK and "안녕" in kiwi.detail
    assert check_analyser("whitespace").level == WARN


def _sample(*extra: str) -> list[str]:
    sample = REPO / "data" / "sample"
    return [f"data.train=[{sample / 'train.csv'}]", f"data.dev={sample / 'dev.csv'}", f"data.test={sample / 'test.csv'}",
            f"data.sample_submission={sample / 'sample_submission.csv'}", "training.precision=auto", *extra]


@pytest.mark.parametrize(
    ("recipe", "folder", "framing", "first_ids"),
    [
        ("kobart.yaml", KOBART, "bart: encoder `<s> dialogue </s>`, decoder starts with `</s>`", "ids [0 30000 257 14323 243"),
        ("t5.yaml", PKO_T5, "t5: encoder `dialogue </s>`, decoder starts with `<pad>`", "ids [50358 27 222 449 13"),
    ],
    ids=["kobart", "pko-t5"],
)
def test_tokenizer_check_shows_the_framed_example(recipe, folder, framing, first_ids):
    check = check_tokenizer(load_config(REPO / "configs" / recipe, _sample(f"model.name={folder}")))
    assert check.level == OK, check.detail
    assert framing in check.detail and "labels `summary </s>`" in check.detail
    dialogue, summary = check.detail.splitlines()[1:3]
    assert dialogue.startswith(f"dev_0 dialogue: {first_ids}") and "#Person1#" in dialogue
    assert summary.startswith("dev_0 summary: ids [") and summary.split("] pieces")[0].endswith(" 1")  # eos id 1
    assert summary.split("pieces [")[1].startswith("#Person1# ")


def test_tokenizer_check_fails_without_eos_or_beyond_positions(tmp_path):
    import json
    import shutil

    no_eos = tmp_path / "kobart-no-eos"
    shutil.copytree(KOBART, no_eos)
    specials = json.loads((no_eos / "special_tokens_map.json").read_text())
    del specials["eos_token"]
    (no_eos / "special_tokens_map.json").write_text(json.dumps(specials))
    check = check_tokenizer(load_config(REPO / "configs/kobart.yaml", _sample(f"model.name={no_eos}")))
    assert check.level == FAIL and "no eos token" in check.detail
    check = check_tokenizer(load_config(REPO / "configs/kobart.yaml", _sample(f"model.name={KOBART}", "model.max_source_length=1100")))
    assert check.level == FAIL and "1026 positions" in check.detail


@pytest.mark.skipif(torch.cuda.is_available() or torch.version.cuda is None, reason="a GPU is visible, or a CPU-only torch")
def test_a_gpu_torch_cannot_use_names_the_driver_the_build_and_the_fix(tmp_path, monkeypatch):
    """A server whose driver is too old for torch's CUDA: nvidia-smi sees the GPU, torch does not.

    No GPU here: a stand-in `nvidia-smi` answers the query as the real one does on such a server.
    """
    from dsum.util.gpu import MIN_DRIVER, torch_build

    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'Tesla V100-SXM2-32GB, 470.82.01'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    check = check_gpu("auto")
    assert check.level == FAIL
    assert "Tesla V100-SXM2-32GB (driver 470.82.01)" in check.detail and torch_build() in check.detail
    assert f"update the NVIDIA driver to {MIN_DRIVER[torch.version.cuda.split('.')[0]]}" in check.detail
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert check_gpu("auto").level == WARN  # no nvidia-smi: a CPU machine


# --- decoder-only and LoRA configs: quantization, GPU memory, summary length, the chat framing ---------------


def test_quantization_needs_bitsandbytes_and_paged_optimizers_cuda():
    from dsum.verbs.doctor import quantization_check

    bnb = "bitsandbytes 0.50.2, CPU backend, native library libbitsandbytes_cpu.so"
    assert quantization_check("none", "auto", cuda=False, bitsandbytes=None) is None
    # 4bit/8bit run wherever bitsandbytes runs: the CPU included.
    assert quantization_check("4bit", "auto", cuda=False, bitsandbytes=bnb) == (
        OK, f"lora.quantization=4bit: {bnb}; no CUDA GPU: quantized layers run on the CPU (slow; fine for small models)")
    assert quantization_check("8bit", "auto", cuda=True, bitsandbytes=None) == (
        FAIL, "lora.quantization=8bit: bitsandbytes is not installed: install bitsandbytes: uv sync")
    assert quantization_check("4bit", "auto", cuda=True, bitsandbytes="bitsandbytes 0.50.2, CUDA backend") == (
        OK, "lora.quantization=4bit: bitsandbytes 0.50.2, CUDA backend; CUDA GPU visible")
    assert quantization_check("none", "paged_adamw_8bit", cuda=False, bitsandbytes=bnb) == (
        FAIL, "training.optimizer=paged_adamw_8bit: paged optimizers need a CUDA GPU and none is visible: "
              "set training.optimizer: adamw_torch")


def _llm(*extra: str):
    return load_config(REPO / "configs/demo-llm.yaml", [*_sample(), *extra])


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_llm_rows_on_a_cpu():
    from dsum.config import GenerationConfig
    from dsum.verbs.doctor import Check, check_llm

    rows = {row.name: row for row in check_llm(_llm("lora.quantization=4bit"))}
    assert list(rows) == ["quantization", "GPU memory", "max_new_tokens"]
    # bitsandbytes' own backend on this machine: 4-bit layers run on the CPU.
    from dsum.model.quantization import bitsandbytes_description

    assert rows["quantization"] == Check("quantization", OK, (
        f"lora.quantization=4bit: {bitsandbytes_description()}; no CUDA GPU: quantized layers run on the CPU "
        "(slow; fine for small models)"))
    assert "CPU backend" in rows["quantization"].detail
    memory = rows["GPU memory"]
    assert memory.level == WARN and memory.detail.startswith("training needs ~") and "no CUDA GPU visible" in memory.detail
    for part in ("weights", "lora weights", "gradients", "optimizer", "activations", "overhead"):
        assert part in memory.detail, part
    # demo-llm's 60 new tokens are short for Korean summaries; left unset, decoder-only models get 160.
    assert rows["max_new_tokens"].level == WARN and "generation.max_new_tokens=60" in rows["max_new_tokens"].detail
    unset = _llm()
    unset = unset.model_copy(update={"generation": GenerationConfig()})
    assert check_llm(unset)[-1] == Check("max_new_tokens", OK, "generation.max_new_tokens=160")
    # A seq2seq model without LoRA gets none of these rows; a target that names no layer fails.
    assert check_llm(load_config(REPO / "configs/demo.yaml", _sample())) == []
    wrong = {row.name: row for row in check_llm(_llm("lora.target_modules=[query]"))}["GPU memory"]
    assert wrong.level == FAIL and "names no layer" in wrong.detail


def test_the_token_per_syllable_advice_is_for_korean_data_only(tmp_path):
    from dsum.verbs.doctor import Check, check_llm

    english = tmp_path / "dev.jsonl"
    english.write_text('{"fname": "dev_0", "dialogue": "#Person1#: Hello, how are you?\\n#Person2#: Fine.", '
                       '"summary": "#Person2# is fine."}\n', encoding="utf-8")
    ok = Check("max_new_tokens", OK, "generation.max_new_tokens=60")
    # data.language auto reads the dev dialogues: English here, Korean in the bundled sample.
    assert check_llm(_llm(f"data.dev={english}"))[-1] == ok
    assert check_llm(_llm())[-1].level == WARN
    assert check_llm(_llm("data.language=en"))[-1] == ok
    assert check_llm(_llm(f"data.dev={english}", "data.language=ko"))[-1].level == WARN


def test_llm_tokenizer_rows_show_the_prompt_and_the_end_of_turn():
    from standins import SOLAR

    tiny = check_tokenizer(_llm())
    assert tiny.level == OK, tiny.detail
    assert "decoder-only: prompt '<|im_start|>system\\n" in tiny.detail
    assert tiny.detail.splitlines()[1].startswith("dev_0 prompt: ids [") and "\\n" in tiny.detail.splitlines()[1]
    assert tiny.detail.splitlines()[2].endswith("<|im_end|>] (82 ids)")
    solar = check_tokenizer(load_config(REPO / "configs/solar-qlora.yaml", _sample(f"model.name={SOLAR}")))
    assert solar.level == OK, solar.detail
    assert "labels `summary </s>`" in solar.detail and solar.detail.splitlines()[2].split("] pieces")[0].endswith(" 2")


def test_disk_check_of_a_lora_run_counts_the_adapters():
    from standins import SOLAR

    cfg = load_config(REPO / "configs/solar-qlora.yaml", _sample(f"model.name={SOLAR}"))
    assert parameter_count(cfg.model, cfg.lora) == (48 * 16 * 81920, "LoRA r16 adapters only")
    assert parameter_count(cfg.model) == (10_731_524_096, "from the model's config.json")
    assert check_disk(cfg).level == OK and "62.9M params" in check_disk(cfg).detail


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_solar_qlora_recipe_rows():
    from standins import SOLAR

    result = run_dsum("doctor", "-c", "configs/solar-qlora.yaml", *[a for s in _sample(f"model.name={SOLAR}") for a in ("--set", s)], env=WIDE)
    assert result.returncode == 0, result.stdout + result.stderr  # QLoRA runs on bitsandbytes' CPU backend too
    quantization = _mark_line(result.stdout, "quantization")
    assert "✓" in quantization and "CPU backend" in quantization
    memory = _mark_line(result.stdout, "GPU memory")
    # The training step (logits at the 160 label positions of a row only, dsum.model.label_loss) needs 1.21 GiB over
    # the weights; dev evaluation's generate() inside training (KV cache of the eval batch, prefill, scores) 5.57.
    assert "!" in memory and "training needs ~12.9 GiB at dev evaluation's generation (weights 6.01" in memory
    assert "the training step's gradients + activations 1.21 GiB" in memory
    assert "✓" in _mark_line(result.stdout, "max_new_tokens") and "✓" in _mark_line(result.stdout, "tokenizer")


def test_an_unreachable_hub_is_asked_once_and_named_in_one_line(monkeypatch):
    """No network (here: the hub's address is a closed port on this machine): one probe, then every lookup reads
    the cache alone; huggingface_hub's five retries with backoff (~50 s of "Retrying in 8s") never start."""
    import socket

    from dsum.util import hub

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub.forget()
    try:
        result = run_dsum("doctor", "-c", "configs/kobart.yaml", env={"HF_ENDPOINT": f"http://127.0.0.1:{port}", **WIDE})
    finally:
        hub.forget()
    assert result.returncode == 1
    assert "│ ✗ │ model     │ digit82/kobart-summarization: cannot reach the hub; not in the cache" in result.stdout
    assert "Retrying" not in result.stderr + result.stdout
