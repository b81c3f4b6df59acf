"""`dsum average`: one checkpoint whose weights are the (weighted) mean of several checkpoints' weights.

Averaging makes sense for models that sit in one basin: the last epochs of a run, or the K fold
models of one recipe. It needs one architecture and one tokenizer: every tensor has the same name
and shape in every checkpoint and the vocabularies are identical, id for id; anything else is a
one-line error before any work.

Full checkpoints: the first checkpoint is loaded as the model to write into, each parameter and
floating buffer becomes Σ wᵢ θᵢ (weights normalised to sum 1, accumulated in float32, written back
in the checkpoint's dtype); integer buffers must be equal. Parameters are walked once per tensor
(named_parameters drops tied duplicates), so tied weights (BART's shared embeddings and lm_head)
are averaged once and stay tied when save_pretrained writes the folder.

LoRA adapters (folders with adapter_config.json) of one base: peft's add_weighted_adapter with
combination_type "cat". "cat" stacks the adapters along the rank, A = [w₁s₁A₁; w₂s₂A₂; …] and
B = [B₁ B₂ …], so the merged delta B·A is exactly Σ wᵢ sᵢ BᵢAᵢ, the weighted mean of the adapters'
deltas (rank: the sum of the ranks). "linear" sums A's and B's separately (each scaled by √w):
(Σ √wᵢ Bᵢ)(Σ √wᵢ Aᵢ) adds cross terms BᵢAⱼ and is not the mean of the deltas.

The output folder is written whole or not at all: into a temporary folder beside it, then renamed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from dsum.util.atomic import new_folder
from dsum.model.loading import is_adapter, read_adapter_config
from dsum.util.errors import UserError


def normalised_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """Weights summing to 1 (equal when none are given)."""
    if not weights:
        return [1.0 / count] * count
    if len(weights) != count:
        raise UserError(f"--weights has {len(weights)} values for {count} checkpoints: give one weight per checkpoint")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise UserError(f"--weights {list(weights)} must be non-negative with a positive sum (they are normalised to sum 1)")
    total = sum(weights)
    return [w / total for w in weights]


def average_checkpoints(checkpoints: Sequence[Path], out: Path, weights: Sequence[float] | None = None) -> Path:
    """Write the weighted average of `checkpoints` (model folders or run directories) to `out`; returns `out`."""
    from dsum.model.loading import checkpoint_folder

    if len(checkpoints) < 2:
        raise UserError("give two or more checkpoints to average (e.g. the last epochs of a run, or the fold models)")
    folders = [checkpoint_folder(path) for path in checkpoints]
    shares = normalised_weights(weights, len(folders))
    adapters = [is_adapter(folder) for folder in folders]
    if any(adapters) and not all(adapters):
        raise UserError(
            f"{', '.join(str(f) for f, a in zip(folders, adapters) if a)} hold LoRA adapters and the others full models: "
            "average adapters with adapters, full checkpoints with full checkpoints"
        )
    write = _average_adapters if all(adapters) else _average_models
    with new_folder(out, "an average") as tmp:
        write(folders, shares, tmp)
        record = {"averaged": [str(f) for f in folders], "weights": shares, "adapters": all(adapters)}
        (tmp / "averaged_from.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return Path(out)


def _tensors(model) -> dict:
    """name → tensor, each tensor once (tied weights under their first name), buffers included."""
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def _check_same_tensors(first_folder: Path, first: dict, folder: Path, other: dict) -> None:
    missing, extra = sorted(first.keys() - other.keys()), sorted(other.keys() - first.keys())
    if missing or extra:
        shown = ", ".join([*missing[:2], *extra[:2]])
        raise UserError(
            f"{folder} and {first_folder} hold different tensors ({shown}): average only checkpoints of one architecture"
        )
    for name, tensor in first.items():
        if other[name].shape != tensor.shape:
            raise UserError(
                f"{name} is {tuple(other[name].shape)} in {folder} but {tuple(tensor.shape)} in {first_folder}: "
                "average only checkpoints of one architecture and size"
            )


def _average_models(folders: list[Path], shares: list[float], out: Path) -> None:
    import torch

    from dsum.model.loading import check_same_tokenizer, load_pretrained

    model, tokenizer = load_pretrained(folders[0])
    target = _tensors(model)
    sums = {name: t.detach().float() * shares[0] for name, t in target.items() if t.is_floating_point()}
    for folder, share in zip(folders[1:], shares[1:]):
        other_model, other_tokenizer = load_pretrained(folder)  # one at a time: memory for two models, not K
        check_same_tokenizer([folders[0], folder], [tokenizer, other_tokenizer])
        other = _tensors(other_model)
        _check_same_tensors(folders[0], target, folder, other)
        for name, tensor in other.items():
            if name in sums:
                sums[name] += tensor.detach().float() * share
            elif not torch.equal(tensor, target[name]):
                raise UserError(f"the integer buffer {name} differs between {folders[0]} and {folder}: they cannot be averaged")
        del other_model, other
    with torch.no_grad():
        for name, total in sums.items():
            target[name].copy_(total.to(target[name].dtype))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _average_adapters(folders: list[Path], shares: list[float], out: Path) -> None:
    from peft import PeftModel

    from dsum.model.loading import check_same_tokenizer, load_pretrained
    from dsum.model.tokenization import TOKENIZER_FILES, load_tokenizer

    configs = [read_adapter_config(folder) for folder in folders]
    bases = {config.get("base_model_name_or_path") for config in configs}
    if len(bases) != 1 or None in bases:
        raise UserError(f"the adapters name different base models ({', '.join(sorted(map(str, bases)))}): average adapters of one base")
    with_tokenizer = [f for f in folders if any((f / name).is_file() for name in TOKENIZER_FILES)]
    if len(with_tokenizer) > 1:
        check_same_tokenizer(with_tokenizer, [load_tokenizer(f) for f in with_tokenizer])
    base, _ = load_pretrained(bases.pop())
    names = [f"member{i}" for i in range(len(folders))]
    try:
        model = PeftModel.from_pretrained(base, str(folders[0]), adapter_name=names[0])
        for name, folder in zip(names[1:], folders[1:]):
            model.load_adapter(str(folder), adapter_name=name)
        # "default" is the name peft saves at the folder's top level (others go to subfolders).
        model.add_weighted_adapter(names, shares, adapter_name="default", combination_type="cat")
    except (ValueError, RuntimeError, KeyError) as exc:
        from dsum.model.tokenization import first_line

        raise UserError(f"cannot average the adapters: {first_line(exc)} (they must target the same modules of one base)") from None
    model.set_adapter("default")
    for name in names:
        model.delete_adapter(name)
    model.save_pretrained(out)
    if with_tokenizer:
        load_tokenizer(with_tokenizer[0]).save_pretrained(out)
