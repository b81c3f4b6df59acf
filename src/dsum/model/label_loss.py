"""A decoder-only model's training loss with the output layer run only where a label is.

On the real recipes ~90% of a training row is prompt, whose labels are -100: the full-logits loss
(transformers' ForCausalLMLoss, TRL's and the teams' recipe) still builds batch × length × vocabulary
logits (Qwen3: 151,936 entries a position), upcasts them to fp32, log-softmaxes them and keeps both for
the backward, then throws away everything but the label positions. Here the hidden states are gathered
at the positions whose next token carries a label (after the causal shift) before the LM head, so the
head, the softmax and their gradients cover only those positions — what TRL's "skip masked" loss and
Liger's fused cross-entropy do.

Mechanism: a forward pre-hook on the model's output layer replaces its input (batch × length × hidden)
by the gathered rows (labels × hidden) for the duration of one forward call. The call still goes through
the top-level module (a DDP wrapper's forward and its gradient hooks, peft's wrappers, gradient
checkpointing, and anything the model applies after the head, such as logit soft-capping, which is
element-wise). transformers' own `logits_to_keep` cannot do it: its index tensor selects the same
positions in every row of a batch, while each row's labels sit elsewhere.

The value and the adapters' gradients equal the full-logits loss's (tests/unit/test_label_loss.py):
summed cross-entropy over the label tokens divided by `num_items_in_batch` when the Trainer gives it
(the label tokens of the whole accumulated batch), else by this batch's label tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def label_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask, targets): mask[b, t] is True where position t predicts a label (labels[b, t + 1] != -100);
    targets are those labels in the same (row-major) order as hidden[mask]."""
    following = labels[:, 1:]
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = following.ne(IGNORE)
    return mask, following[following.ne(IGNORE)]


def unwrap(model):
    """The transformers model under DDP / accelerate and peft wrappers (PeftModel → LoraModel → CausalLM)."""
    while hasattr(model, "module"):  # DistributedDataParallel
        model = model.module
    if hasattr(model, "get_base_model"):  # peft
        model = model.get_base_model()
    return model


def output_layer(model) -> torch.nn.Module:
    """The module that turns hidden states into logits (peft's wrapper of it where it adapts or saves it)."""
    base = unwrap(model)
    head = base.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(base).__name__} has no output layer to compute label-only logits with")
    # Adapted or saved by peft: the wrapper sits where the layer was; get_output_embeddings() then already
    # returns it (it reads the attribute), so calling it runs the adapters too.
    return head


def label_logits(model, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, targets): the model's logits at the label positions of `inputs` (labels × vocabulary) and the labels
    they predict. `inputs` holds labels and the model's other inputs; the labels are not passed to the model."""
    labels = inputs["labels"]
    mask, targets = label_positions(labels)
    head = output_layer(model)
    calls = []

    def gather(module, args):
        (hidden,) = args
        calls.append(hidden.shape)
        if hidden.shape[:2] != mask.shape:
            raise ValueError(f"the output layer got hidden states of shape {tuple(hidden.shape)}, the labels are {tuple(mask.shape)}")
        return (hidden[mask.to(hidden.device)],)

    handle = head.register_forward_pre_hook(gather)
    try:
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
    finally:
        handle.remove()
    if len(calls) != 1:
        raise ValueError(f"the output layer ran {len(calls)} times in one forward; label-only logits need exactly one")
    return outputs.logits, targets.to(outputs.logits.device)


def label_only_loss(model, inputs: dict, num_items_in_batch=None, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy over the label tokens, the output layer run on those positions only.

    Summed and divided by `num_items_in_batch` when given (the Trainer then treats it as scaled for gradient
    accumulation), else the mean over this batch's label tokens — as transformers' ForCausalLMLoss reduces.
    Label smoothing as the Trainer's LabelSmoother (torch's formula: (1 - ε)·nll + ε·mean over the vocabulary).
    """
    logits, targets = label_logits(model, inputs)
    total = F.cross_entropy(logits.float(), targets, reduction="sum", label_smoothing=label_smoothing)
    if num_items_in_batch is None:
        return total / targets.numel() if targets.numel() else total
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch
