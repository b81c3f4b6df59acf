"""Real weights: SmolLM2-135M-Instruct (Apache-2.0, ../shared/models, a llama.cpp GGUF Q4_1 file) on
English DialogSum (../shared/data/dialogsum-en), end to end through dsum.

What the random-weight stand-ins cannot show: zero-shot this instruct model writes commentary rather
than summaries and often runs to the token limit; a short LoRA teaches it the format (one sentence
with the #Person# tokens, then `<|im_end|>`), and the dev score rises by a clear margin, in fp32 and
with the base quantized to 4-bit NF4 on the CPU (QLoRA, bitsandbytes' CPU backend).

Sized for the suite: dialogues of 300-500 characters (no prompt is cut at model.max_source_length=192),
32 training dialogues, one epoch of 4 steps of 8 at a constant learning rate of 2e-3 (LoRA r16 on every
linear layer), 12 dev and 3 test dialogues, greedy decoding, 48 new tokens, the whitespace analyser
(English; data.language: en). Measured here (2 CPU cores, other jobs running): the whole file in 2 min
13 s (a later run 4 min 33 s, its fp32 training 164 s instead of 28 s: not yet explained), 6.1 GB peak resident; dev board score zero-shot 8.25 (6 of 12 answers cut at 48 tokens), after
LoRA 22.51 in fp32 (0 of 12 cut) and 26.11 with the base in 4-bit NF4 (1 of 12 cut). With 3 steps
(24 dialogues) the fp32 model learned the style but not yet to stop (10 of 12 cut): 4 is the least.

The GGUF file is converted once per session into a float32 folder (dsum.model.gguf, the cache pointed
at a session folder), as `model.name: <file>.gguf` converts it for a user.
"""

from __future__ import annotations

import json
import logging
import re
from contextlib import chdir, contextmanager
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO

SHARED = REPO.parent / "shared"
GGUF = SHARED / "models" / "HuggingFaceTB__SmolLM2-135M-Instruct-Q4_1" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DIALOGSUM = SHARED / "data" / "dialogsum-en"

pytestmark = pytest.mark.skipif(
    not GGUF.is_file() or not DIALOGSUM.is_dir(),
    reason=f"{GGUF} or {DIALOGSUM} is absent (the real weights live in ../shared beside the clone)",
)

SIZES = {"train": 32, "dev": 12, "test": 3}
SYSTEM = "Summarize the dialogue in one sentence."
MAX_NEW_TOKENS = 48
CUT = re.compile(r"(\d+) of (\d+) summaries hit max_new_tokens")


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> Path:
    """The GGUF file converted once into dsum's cache, here a folder of this session."""
    from dsum.model.gguf import local_model

    patch = pytest.MonkeyPatch()
    patch.setenv("DSUM_CACHE", str(tmp_path_factory.mktemp("dsum-cache")))
    try:
        yield Path(local_model(GGUF))
    finally:
        patch.undo()


@pytest.fixture(scope="session")
def english(tmp_path_factory) -> Path:
    """Short DialogSum dialogues (300-500 characters), the first of each split in file order; test keeps its
    three references (summary1..3)."""
    folder = tmp_path_factory.mktemp("dialogsum")
    for split, n in SIZES.items():
        rows = [json.loads(line) for line in (DIALOGSUM / f"dialogsum.{split}.jsonl").read_text(encoding="utf-8").splitlines()]
        short = [row for row in rows if 300 <= len(row["dialogue"]) <= 500][:n]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in short), encoding="utf-8")
    return folder


def config(data: Path, out: Path, **extra):
    from dsum import load_config

    settings = {
        "general.output_dir": str(out), "general.run_name": "smollm2", "general.seed": 42,
        "data.train": [str(data / "train.jsonl")], "data.dev": str(data / "dev.jsonl"), "data.test": str(data / "test.jsonl"),
        "data.sample_submission": None, "data.language": "en",
        "model.name": str(GGUF), "model.max_source_length": 192, "model.max_target_length": 48,
        "lora.r": 16, "lora.alpha": 32, "lora.dropout": 0.0, "lora.target_modules": "all-linear",
        "prompt.system": SYSTEM, "prompt.user": "{dialogue}",
        "training.learning_rate": 2e-3, "training.batch_size": 8, "training.eval_batch_size": 12, "training.epochs": 1,
        "training.warmup_ratio": 0.0, "training.scheduler": "constant", "training.weight_decay": 0.0,
        "training.early_stopping_patience": None, "training.eval_subset": 1, "training.save_total_limit": 1,
        "training.logging_steps": 1,
        "generation.num_beams": 1, "generation.no_repeat_ngram_size": 0, "generation.max_new_tokens": MAX_NEW_TOKENS,
        "metric.tokenizer": "whitespace",
        **extra,
    }
    return load_config(None, settings)


@contextmanager
def dsum_messages():
    """The lines dsum logs meanwhile (its logger does not propagate: a handler on it sees them)."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("dsum")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


def cut_counts(lines: list[str]) -> list[tuple[int, int]]:
    """(cut, rows) of each prediction reported meanwhile: rows that hit max_new_tokens without `<|im_end|>`."""
    return [(int(m[1]), int(m[2])) for m in map(CUT.search, lines) if m]


@pytest.fixture(scope="module")
def zero_shot(smollm2, english, tmp_path_factory) -> dict:
    """`dsum predict --checkpoint <file>.gguf --split dev`: the model as published, no training. Without --out the
    file is written in the current folder (../shared, beside the .gguf file, is read-only)."""
    import dsum

    out = tmp_path_factory.mktemp("zero-shot")
    with dsum_messages() as lines, chdir(out):
        result = dsum.predict(config(english, out), GGUF, split="dev", out=None)
    assert result["path"] == "dev_predict.csv" and len(pd.read_csv(out / "dev_predict.csv")) == SIZES["dev"]
    result["cut"] = cut_counts(lines)
    return result


def train_run(english: Path, out: Path, **extra) -> tuple[Path, list[tuple[int, int]]]:
    import dsum

    with dsum_messages() as lines:
        run_dir = dsum.train(config(english, out, **extra))
    return run_dir, cut_counts(lines)


@pytest.fixture(scope="module")
def trained(smollm2, english, tmp_path_factory):
    return train_run(english, tmp_path_factory.mktemp("lora"))


@pytest.fixture(scope="module")
def trained_4bit(smollm2, english, tmp_path_factory):
    return train_run(english, tmp_path_factory.mktemp("qlora"), **{"lora.quantization": "4bit"})


def test_gguf_converts_once_to_a_plain_model_folder(smollm2):
    from transformers import AutoConfig

    from dsum.model.gguf import SOURCE_FILE, local_model
    from dsum.model.tokenizer import load_tokenizer

    assert sorted(p.name for p in smollm2.iterdir()) == [
        "chat_template.jinja", "config.json", SOURCE_FILE, "generation_config.json", "model.safetensors",
        "tokenizer.json", "tokenizer_config.json",
    ]
    source = json.loads((smollm2 / SOURCE_FILE).read_text(encoding="utf-8"))
    assert (source["gguf"], source["size"]) == (str(GGUF.resolve()), 98362432)
    config = AutoConfig.from_pretrained(smollm2)
    assert (config.model_type, config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.num_key_value_heads, config.vocab_size, config.tie_word_embeddings) == ("llama", 30, 576, 9, 3, 49152, True)
    assert not hasattr(config, "quantization_config")
    written = (smollm2 / "model.safetensors").stat().st_mtime_ns
    assert local_model(GGUF) == str(smollm2)  # converted already: the same folder, not written again
    assert (smollm2 / "model.safetensors").stat().st_mtime_ns == written
    tokenizer = load_tokenizer(GGUF)  # a .gguf name loads the converted tokenizer
    assert (tokenizer.eos_token, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token) == ("<|im_end|>", 2, 2, "<|im_start|>")


def test_chatml_prompt_and_labels_are_exact(smollm2):
    from transformers import AutoConfig

    from dsum.config import PromptConfig
    from dsum.model.tokenization import framing_for
    from dsum.model.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(smollm2)
    framing = framing_for(AutoConfig.from_pretrained(smollm2), tokenizer, PromptConfig(system=SYSTEM, user="{dialogue}"))
    assert (framing.end_of_turn, framing.stop_ids, framing.pad, framing.prefix) == (2, (2,), 2, ())
    dialogue = "#Person1#: Hi, is the bank open?\n#Person2#: Yes, until five."
    summary = "#Person2# tells #Person1# the bank is open until five."
    row = framing.encode_examples([dialogue], [summary], 192, 48).rows[0]
    prompt = [
        1, 9690, 198, 13764, 3298, 836, 260, 7489, 281, 582, 6330, 30, 2, 198,  # <|im_start|>system\n…<|im_end|>\n
        1, 4093, 198, 19, 26985, 33, 19, 42, 21041, 28, 314, 260, 5461, 1440, 47, 198,  # <|im_start|>user\n#Person1#: …
        19, 26985, 34, 19, 42, 9230, 28, 1793, 2531, 30, 2, 198,  # #Person2#: Yes, until five.<|im_end|>\n
        1, 520, 9531, 198,  # <|im_start|>assistant\n
    ]
    answer = [19, 26985, 34, 19, 6200, 907, 26985, 33, 19, 260, 5461, 314, 1440, 1793, 2531, 30, 2]  # … five.<|im_end|>
    assert row["input_ids"] == prompt + answer
    assert row["labels"] == [-100] * len(prompt) + answer
    assert row["attention_mask"] == [1] * len(prompt + answer)
    assert tokenizer.decode(prompt) == (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{dialogue}<|im_end|>\n<|im_start|>assistant\n")
    # The model's own chat template, tokenized by transformers, gives the same ids (the newline after
    # <|im_end|> it writes last is not trained on).
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": dialogue}]
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert tokenizer(rendered, add_special_tokens=False)["input_ids"] == prompt
    full = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": summary}], tokenize=False)
    assert tokenizer(full, add_special_tokens=False)["input_ids"] == prompt + answer + [198]


def test_zero_shot_writes_commentary_that_runs_long(zero_shot):
    assert zero_shot["rows"] == SIZES["dev"]
    assert zero_shot["score"] < 12
    (cut, rows), = zero_shot["cut"]
    assert rows == SIZES["dev"] and cut >= 4


def assert_learned_the_format(run_dir: Path, cut: list[tuple[int, int]], zero_shot: dict, margin: float) -> float:
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert json.loads((run_dir / "status.json").read_text(encoding="utf-8"))["status"] == "finished"
    assert metrics["global_step"] == 4 and metrics["truncated"]["dev_sources"] == 0
    score = metrics["dev"]["score"]
    assert score >= zero_shot["score"] + margin, (score, zero_shot["score"])
    dev_cut, rows = cut[-2]  # the final dev prediction, then the test submission
    assert rows == SIZES["dev"] and dev_cut <= 2, cut  # most answers stop at <|im_end|> by themselves
    adapter = json.loads((run_dir / "checkpoint-best" / "adapter_config.json").read_text(encoding="utf-8"))
    assert adapter["base_model_name_or_path"] == str(GGUF.resolve())  # the file, not the cache folder
    return score


def test_lora_learns_the_summary_format(trained, zero_shot):
    run_dir, cut = trained
    assert_learned_the_format(run_dir, cut, zero_shot, margin=8)


def test_merged_export_generates_what_the_adapter_does(trained, english, tmp_path):
    import dsum
    from dsum.verbs.export import export_checkpoint

    run_dir, _ = trained
    merged = export_checkpoint(run_dir, tmp_path / "merged", merge=True)
    assert (merged / "config.json").is_file() and not (merged / "adapter_config.json").exists()
    cfg = config(english, tmp_path, **{"model.name": str(merged)})
    dsum.predict(cfg, merged, split="test", out=tmp_path / "test.csv")
    adapter = pd.read_csv(run_dir / "submission.csv")  # written by the trained adapter model
    assert pd.read_csv(tmp_path / "test.csv")["summary"].tolist() == adapter["summary"].tolist()
    assert len(adapter) == SIZES["test"] and adapter["summary"].str.len().min() > 0


def test_qlora_4bit_trains_on_the_cpu(trained_4bit, zero_shot):
    import bitsandbytes as bnb

    from dsum.model.loading import load_pretrained

    run_dir, cut = trained_4bit
    assert_learned_the_format(run_dir, cut, zero_shot, margin=8)
    model, _ = load_pretrained(run_dir / "checkpoint-best", "4bit")  # as dsum predict loads it (lora.quantization)
    quantized = [name for name, module in model.named_modules() if isinstance(module, bnb.nn.Linear4bit)]
    assert len(quantized) == 30 * 7  # every projection of the 30 layers, the adapters on top; the head stays float
    assert model.get_output_embeddings().weight.dtype.is_floating_point
