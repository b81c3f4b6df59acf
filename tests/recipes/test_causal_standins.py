"""The decoder-only stand-ins (tests/standins.py): SOLAR and Qwen3 with their real tokenizer and config,
sizes shrunk, random fp32 weights; and the bundled tokenizers (tests/models) against ../shared/models."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO
from standins import QWEN3, SOLAR
from transformers import AutoConfig, AutoModelForCausalLM

from dsum.model.tokenization import load_tokenizer

SHARED_MODELS = REPO.parent / "shared" / "models"
LINE = "#Person1#: 안녕하세요, 오늘 회의는 몇 시에 시작하나요?\n#Person2#: 오후 세 시입니다."

# name: (bundled folder, len(tokenizer), eos, eos id, config vocab_size, tied lm_head, model class,
#        first ids of tok("#Person1#: 안녕"))
REAL = {
    "solar": (SOLAR, 32000, "</s>", 2, 32000, False, "LlamaForCausalLM", [1, 422, 14787, 28740, 28771, 28747, 28705, 30325, 238, 136, 152]),
    "qwen3": (QWEN3, 151669, "<|im_end|>", 151645, 151936, True, "Qwen3ForCausalLM", [2, 10680, 16, 48082, 95170, 144370]),
}


@pytest.fixture(scope="module", params=sorted(REAL))
def standin(request):
    """(name, folder): each stand-in is built once (conftest's session fixtures, tmp_path_factory)."""
    return request.param, request.getfixturevalue(f"{request.param}_standin")


def test_standin_keeps_the_real_config_but_the_sizes(standin):
    name, folder = standin
    source, _, _, eos_id, vocab, tied, cls, _ = REAL[name]
    real = json.loads((source / "config.json").read_text(encoding="utf-8"))
    saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert (saved["hidden_size"], saved["num_hidden_layers"], saved["intermediate_size"]) == (32, 1, 64)
    assert (saved["num_attention_heads"], saved["num_key_value_heads"], saved["head_dim"]) == (2, 1, 16)
    assert (saved["vocab_size"], saved["tie_word_embeddings"], saved["architectures"]) == (vocab, tied, [cls])
    assert saved["dtype"] == "float32"
    for key in ("bos_token_id", "eos_token_id", "pad_token_id", "max_position_embeddings", "rms_norm_eps"):
        assert saved.get(key) == real.get(key), key
    assert saved["eos_token_id"] == eos_id
    # generation_config.json is the real one (Qwen3's sampling defaults, SOLAR's pad 2)
    assert (folder / "generation_config.json").read_bytes() == (source / "generation_config.json").read_bytes()


def test_standin_reloads_with_identical_logits(standin):
    name, folder = standin
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert type(model).__name__ == REAL[name][6] and model.dtype == torch.float32
    tied = model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert tied is REAL[name][5]
    # The same seed on the saved config rebuilds the weights that were saved: nothing lost in the round trip
    # (an untied lm_head saved, a tied one re-tied).
    torch.manual_seed(0)
    rebuilt = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), dtype=torch.float32).eval()
    ids = torch.tensor([[5, 17, 300, 1000, 2, 31999]])
    with torch.no_grad():
        logits = model(ids).logits
        assert torch.equal(logits, rebuilt(ids).logits)
    assert logits.shape == (1, 6, REAL[name][4])
    assert not torch.equal(logits[0, 0], logits[0, 1])  # random weights, not a constant model


def test_standin_tokenizer_is_the_real_one(standin):
    name, folder = standin
    _, size, eos, eos_id, _, _, _, first_ids = REAL[name]
    tokenizer = load_tokenizer(folder)
    assert len(tokenizer) == size
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == (eos, eos_id)
    assert tokenizer("#Person1#: 안녕")["input_ids"][: len(first_ids)] == first_ids


@pytest.mark.parametrize("name", sorted(REAL))
def test_bundled_tokenizer_matches_shared(name):
    bundled = REAL[name][0]
    shared = SHARED_MODELS / bundled.name
    if not shared.is_dir():
        pytest.skip(f"{shared} is absent (only the project's own CI has ../shared)")
    ids = load_tokenizer(bundled)(LINE)["input_ids"]
    assert ids == load_tokenizer(shared)(LINE)["input_ids"]
    assert len(ids) > 20
