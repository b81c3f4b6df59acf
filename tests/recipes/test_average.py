"""dsum average: parameter averaging of full checkpoints and of LoRA adapters (tiny BART, CPU)."""

import copy
import json

import pytest
import torch
from conftest import REPO, TINY, input_dependent, run_dsum

from dsum.verbs.average import average_checkpoints
from dsum.config import load_config
from dsum.data.files import read_examples
from dsum.util.errors import UserError
from dsum.model.loading import load_model_and_tokenizer, load_pretrained
from dsum.data.text import special_tokens_for

SAMPLE = REPO / "data" / "sample"


@pytest.fixture(scope="module")
def tiny():
    cfg = load_config(REPO / "configs/demo.yaml", TINY)
    examples = read_examples(SAMPLE / "train.csv")
    texts = [ex.dialogue for ex in examples] + [ex.summaries[0] for ex in examples]
    model, tokenizer = load_model_and_tokenizer(cfg.model, special_tokens_for(texts), train_texts=texts)
    return input_dependent(model, 1), tokenizer


def save(model, tokenizer, folder):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def state(folder):
    model, _ = load_pretrained(folder)
    return {k: v.clone() for k, v in model.state_dict().items()}, model


def test_average_of_two_identical_checkpoints_is_the_checkpoint(tmp_path, tiny):
    model, tokenizer = tiny
    a = save(model, tokenizer, tmp_path / "a")
    b = save(model, tokenizer, tmp_path / "b")
    out = average_checkpoints([a, b], tmp_path / "avg")
    averaged, loaded = state(out)
    original, _ = state(a)
    assert averaged.keys() == original.keys()
    assert all(torch.equal(averaged[k], original[k]) for k in original)
    # BART's shared embeddings and lm_head stay one tensor
    assert loaded.get_output_embeddings().weight.data_ptr() == loaded.get_input_embeddings().weight.data_ptr()
    assert load_pretrained(out)[1].get_vocab() == tokenizer.get_vocab()
    assert json.loads((out / "averaged_from.json").read_text())["weights"] == [0.5, 0.5]


def test_weighted_average_is_the_weighted_mean_of_tensors(tmp_path, tiny):
    model, tokenizer = tiny
    a = save(model, tokenizer, tmp_path / "a")
    b = save(input_dependent(copy.deepcopy(model), 2), tokenizer, tmp_path / "b")
    out = average_checkpoints([a, b], tmp_path / "avg", weights=[1, 3])
    averaged, _ = state(out)
    first, second = state(a)[0], state(b)[0]
    changed = 0
    for name, tensor in averaged.items():
        torch.testing.assert_close(tensor, 0.25 * first[name] + 0.75 * second[name], rtol=0, atol=1e-6)
        changed += not torch.equal(first[name], second[name])
    assert changed > 10


def test_other_vocabulary_or_shape_is_refused_and_nothing_is_written(tmp_path, tiny):
    model, tokenizer = tiny
    a = save(model, tokenizer, tmp_path / "a")
    other = copy.deepcopy(tokenizer)
    other.add_tokens(["#Extra#"])
    b = save(model, other, tmp_path / "b")
    with pytest.raises(UserError, match="another vocabulary"):
        average_checkpoints([a, b], tmp_path / "avg")
    wider = load_config(REPO / "configs/demo.yaml", [*TINY, "model.tiny.ffn_dim=48"])
    examples = read_examples(SAMPLE / "train.csv")
    texts = [ex.dialogue for ex in examples] + [ex.summaries[0] for ex in examples]
    c = save(load_model_and_tokenizer(wider.model, special_tokens_for(texts), train_texts=texts)[0], tokenizer, tmp_path / "c")
    with pytest.raises(UserError, match=r"fc1.weight is \(48, 32\) in .* but \(64, 32\)"):
        average_checkpoints([a, c], tmp_path / "avg")
    with pytest.raises(UserError, match="one weight per checkpoint"):
        average_checkpoints([a, a], tmp_path / "avg", weights=[1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no --out, no temporary folder left


def test_lora_adapters_average_to_the_mean_delta(tmp_path, tiny):
    from peft import LoraConfig, PeftModel, get_peft_model

    model, tokenizer = tiny
    base = save(model, tokenizer, tmp_path / "base")
    folders = []
    for seed, rank in [(3, 4), (4, 2)]:
        torch.manual_seed(seed)
        lora = LoraConfig(r=rank, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        peft_model = get_peft_model(load_pretrained(base)[0], lora)
        peft_model.save_pretrained(tmp_path / f"lora{seed}")
        folders.append(tmp_path / f"lora{seed}")
    out = average_checkpoints(folders, tmp_path / "avg")
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()

    def deltas(folder):
        peft_model = PeftModel.from_pretrained(load_pretrained(base)[0], str(folder))
        return {
            name: module.get_delta_weight("default")
            for name, module in peft_model.named_modules()
            if hasattr(module, "get_delta_weight") and "default" in getattr(module, "lora_A", {})
        }

    merged, first, second = deltas(out), deltas(folders[0]), deltas(folders[1])
    assert merged.keys() == first.keys() and len(merged) == 6  # q_proj, v_proj: encoder self, decoder self and cross attention
    for name in merged:
        assert not torch.allclose(first[name], second[name])
        torch.testing.assert_close(merged[name], (first[name] + second[name]) / 2, rtol=0, atol=1e-6)


def test_cli_average_and_its_one_line_error(tmp_path, tiny):
    from typer.testing import CliRunner

    from dsum.cli import app

    assert "Example: dsum average" in CliRunner().invoke(app, ["average", "--help"]).stdout
    model, tokenizer = tiny
    a = save(model, tokenizer, tmp_path / "a")
    result = run_dsum("average", str(a), str(a), "--out", str(tmp_path / "avg"), "--weights", "2,1")
    assert result.returncode == 0, result.stderr
    assert "averaged 2 checkpoints" in result.stdout and (tmp_path / "avg" / "model.safetensors").is_file()
    result = run_dsum("average", str(a), str(tmp_path / "nowhere"), "--out", str(tmp_path / "avg2"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "checkpoint folder not found" in result.stderr
