"""dsum.model.label_loss: the output layer on label positions only gives the full-logits loss and its gradients.

On the real-shaped Qwen3 (151,936-token vocabulary, tied head) and SOLAR (32,000, untied) stand-ins with
LoRA on every linear layer, right-padded batches whose prompts are -100, two micro-batches accumulated with
the Trainer's num_items_in_batch: loss and every adapter gradient equal transformers' own loss to 1e-5.
In float32, as training runs: the two paths sum the same products in a different order (the head's matmul over
fewer rows), so gradients are compared by relative norm, ‖ours − full‖ ≤ 1e-5 · ‖full‖ for every adapter tensor.
"""

import pytest
import torch
from transformers import AutoModelForCausalLM, TrainingArguments

from dsum.model.label_loss import label_logits, label_only_loss, label_positions
from dsum.verbs.trainer import DsumTrainer

VOCAB = {"qwen3_standin": 151_936, "solar_standin": 32_000}


def lora_model(path, seed: int = 0, dtype=torch.float32):
    """The stand-in with LoRA r 4 on every linear layer, every weight (adapters' B included) random at std 0.1."""
    from peft import LoraConfig, get_peft_model

    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0))
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0, 0.1)
    return model.train()


def batch(lengths: list[tuple[int, int]], vocab: int, seed: int) -> dict:
    """Right-padded rows of (prompt, answer) lengths: labels -100 on the prompt and the padding."""
    g = torch.Generator().manual_seed(seed)
    width = max(p + a for p, a in lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    labels = torch.full((len(lengths), width), -100)
    for row, (prompt, answer) in enumerate(lengths):
        ids[row, : prompt + answer] = torch.randint(0, vocab, (prompt + answer,), generator=g)
        mask[row, : prompt + answer] = 1
        labels[row, prompt : prompt + answer] = ids[row, prompt : prompt + answer]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def adapter_grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


MICRO_BATCHES = [[(9, 4), (5, 6)], [(12, 3), (3, 2), (7, 5)]]


def test_label_positions_are_the_shifted_labels():
    labels = torch.tensor([[-100, -100, 7, 8, -100], [-100, 5, 6, 9, 4]])
    mask, targets = label_positions(labels)
    assert mask.tolist() == [[False, True, True, False, False], [True, True, True, True, False]]
    assert targets.tolist() == [7, 8, 5, 6, 9, 4]


@pytest.mark.parametrize("which", ["qwen3_standin", "solar_standin"])
def test_same_loss_and_adapter_gradients_as_full_logits_with_accumulation(which, request):
    model = lora_model(request.getfixturevalue(which), dtype=torch.float32)
    vocab = VOCAB[which]
    assert model.get_output_embeddings().weight.shape[0] == vocab
    micro = [batch(lengths, vocab, seed) for seed, lengths in enumerate(MICRO_BATCHES)]
    items = sum(int(b["labels"][:, 1:].ne(-100).sum()) for b in micro)  # as the Trainer counts num_items_in_batch
    assert items == 4 + 6 + 3 + 2 + 5

    full_losses = []
    for b in micro:
        loss = model(**b, num_items_in_batch=torch.tensor(items)).loss  # transformers' ForCausalLMLoss
        loss.backward()
        full_losses.append(loss.item())
    full = adapter_grads(model)
    model.zero_grad()

    label_losses = []
    for b in micro:
        loss = label_only_loss(model, b, torch.tensor(items))
        loss.backward()
        label_losses.append(loss.item())
    ours = adapter_grads(model)

    assert label_losses == pytest.approx(full_losses, rel=1e-5, abs=0)
    assert len(ours) == len(full) and all(g.abs().max() > 0 for g in full.values())
    errors = {name: float((ours[name] - grad).norm() / grad.norm()) for name, grad in full.items()}
    assert max(errors.values()) <= 1e-5, max(errors.items(), key=lambda kv: kv[1])


@pytest.mark.parametrize("which", ["qwen3_standin", "solar_standin"])
def test_without_num_items_the_loss_is_the_batch_mean(which, request):
    model = lora_model(request.getfixturevalue(which))
    b = batch(MICRO_BATCHES[1], VOCAB[which], seed=3)
    with torch.no_grad():
        assert label_only_loss(model, b).item() == pytest.approx(model(**b).loss.item(), rel=1e-5, abs=0)
        logits, targets = label_logits(model, b)
    # Only the 3 + 2 + 5 label positions reach the output layer.
    assert tuple(logits.shape) == (10, VOCAB[which]) and targets.tolist() == b["labels"][b["labels"].ne(-100)].tolist()


def test_the_trainer_uses_it_for_decoder_only_models_with_label_smoothing_too(qwen3_standin, tmp_path):
    """DsumTrainer.compute_loss (label-only) against the Trainer's own (full logits, LabelSmoother), as training calls it."""
    model = lora_model(qwen3_standin)
    b = batch(MICRO_BATCHES[0], VOCAB["qwen3_standin"], seed=5)
    items = torch.tensor(int(b["labels"][:, 1:].ne(-100).sum()) + 7)  # a larger accumulated batch
    for smoothing in (0.0, 0.1):
        args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, label_smoothing_factor=smoothing)
        ours = DsumTrainer(model=model, args=args, dev_evaluation=None, label_smoothing=smoothing, label_only_loss=True)
        theirs = DsumTrainer(model=model, args=args, dev_evaluation=None, label_smoothing=smoothing)
        assert ours.model_accepts_loss_kwargs
        with torch.no_grad():
            mine = ours.compute_loss(model, dict(b), num_items_in_batch=items).item()
            full = theirs.compute_loss(model, dict(b), num_items_in_batch=items).item()
        assert mine == pytest.approx(full, rel=1e-5, abs=0), smoothing
