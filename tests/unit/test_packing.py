"""dsum.model.packing: examples packed into rows see only themselves, and the loss is the unpacked rows' loss."""

import pytest
import torch
from conftest import REPO, input_dependent, run_dsum
from transformers import AutoModelForCausalLM

from dsum.model.label_loss import label_only_loss
from dsum.model.packing import PackedCollator, pack_rows

VOCAB = {"qwen3_standin": 151_936, "solar_standin": 32_000}


def example(prompt: int, answer: int, vocab: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (prompt + answer,), generator=g).tolist()
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [-100] * prompt + ids[prompt:]}


def test_best_fit_decreasing_rows_hold_every_example_once():
    rows = [{"input_ids": [i] * n, "labels": [-100] + [i] * (n - 1)} for i, n in enumerate([5, 3, 4, 2, 6])]
    packed = pack_rows(rows, 8)
    # Longest first, each into the fullest row it fits: 6 | 5 | 4, then 3 → beside the 5, 2 → beside the 6.
    assert [row["input_ids"] for row in packed] == [[4] * 6 + [3] * 2, [0] * 5 + [1] * 3, [2] * 4]
    assert [row["position_ids"] for row in packed] == [[0, 1, 2, 3, 4, 5, 0, 1], [0, 1, 2, 3, 4, 0, 1, 2], [0, 1, 2, 3]]
    # Each example's first label is -100: it would be predicted from the previous example's last token.
    assert [row["labels"] for row in packed] == [
        [-100] + [4] * 5 + [-100, 3], [-100] + [0] * 4 + [-100, 1, 1], [-100, 2, 2, 2]]
    with pytest.raises(ValueError, match="an example of 6 tokens does not fit a packed row of 5"):
        pack_rows(rows, 5)


def test_collator_pads_right_with_a_new_sequence_and_no_attention_mask():
    rows = [{"input_ids": [7, 8, 9], "labels": [-100, 8, 9], "position_ids": [0, 1, 0]}, {"input_ids": [5], "labels": [-100], "position_ids": [0]}]
    batch = PackedCollator(pad_token_id=2)(rows)
    assert set(batch) == {"input_ids", "labels", "position_ids", "use_cache"} and batch["use_cache"] is False
    assert batch["input_ids"].tolist() == [[7, 8, 9], [5, 2, 2]]
    assert batch["labels"].tolist() == [[-100, 8, 9], [-100, -100, -100]]
    assert batch["position_ids"].tolist() == [[0, 1, 0], [0, 0, 1]]
    assert PackedCollator(2, multiple=4)(rows)["input_ids"].tolist() == [[7, 8, 9, 2], [5, 2, 2, 2]]


@pytest.mark.parametrize("which", ["qwen3_standin", "solar_standin"])
def test_packed_examples_see_only_themselves_and_give_the_unpacked_loss(which, request):
    model = input_dependent(AutoModelForCausalLM.from_pretrained(request.getfixturevalue(which), dtype=torch.float32))
    assert model.config._attn_implementation == "sdpa"
    vocab = VOCAB[which]
    examples = [example(p, a, vocab, seed) for seed, (p, a) in enumerate([(11, 4), (6, 5), (9, 3), (4, 2), (7, 6)])]
    packed = pack_rows(examples, 32)
    # Lengths 15, 11, 12, 6, 13 → [15 + 13 | 12 + 11 + 6]: two rows for five examples.
    assert [len(row["input_ids"]) for row in packed] == [28, 29]
    batch = PackedCollator(pad_token_id=0)(packed)
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        # Each example's logits in its packed row equal its logits alone.
        starts = {}
        for row, members in enumerate([[0, 4], [2, 1, 3]]):
            offset = 0
            for i in members:
                starts[i] = (row, offset)
                offset += len(examples[i]["input_ids"])
        for i, ex in enumerate(examples):
            alone = model(input_ids=torch.tensor([ex["input_ids"]])).logits[0]
            row, start = starts[i]
            assert (logits[row, start : start + len(ex["input_ids"])] - alone).abs().max() < 1e-4, i
        # The control: an all-ones attention mask makes transformers skip the boundaries; examples then see each other.
        mixed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                      attention_mask=torch.ones_like(batch["input_ids"])).logits
        assert (mixed - logits).abs().max() > 1e-1

        # The loss: packed rows (label-only logits) = right-padded unpacked rows (transformers' full-logits loss).
        width = max(len(ex["input_ids"]) for ex in examples)
        padded = {
            "input_ids": torch.tensor([ex["input_ids"] + [0] * (width - len(ex["input_ids"])) for ex in examples]),
            "attention_mask": torch.tensor([[1] * len(ex["input_ids"]) + [0] * (width - len(ex["input_ids"])) for ex in examples]),
            "labels": torch.tensor([ex["labels"] + [-100] * (width - len(ex["labels"])) for ex in examples]),
        }
        items = torch.tensor(4 + 5 + 3 + 2 + 6)
        full = model(**padded, num_items_in_batch=items).loss.item()
        assert label_only_loss(model, batch, items).item() == pytest.approx(full, rel=1e-5, abs=0)
        assert model(**batch).loss.item() == pytest.approx(full, rel=1e-5, abs=0)  # packed rows, full logits


def test_packing_a_seq2seq_model_is_refused_in_one_line(tmp_path):
    result = run_dsum("train", "-c", str(REPO / "configs/demo.yaml"), "--set", f"general.output_dir={tmp_path / 'runs'}",
                      "--set", "training.packing=true")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(
        "training.packing is for decoder-only models: set training.packing=false for a seq2seq model")
    assert not (tmp_path / "runs").exists()
