"""What a training run survives: divergence, out of memory, SIGTERM / Ctrl-C, and saves that fail.

    class DsumTrainer(FaultTolerance, Trainer)      # dsum.verbs.trainer
    faults = guard_training(trainer, cfg, run_dir, precision)
    with faults:                                   # signal handlers installed for the training loop
        trainer.train(...)

- Divergence (DivergenceGuard): every optimizer step, after the gradient norm and before the optimizer steps,
  the step's loss and gradient norm are checked. The run stops at the first non-finite loss, the first
  non-finite gradient norm (fp16: left to the loss scaler, which skips that step, unless it skips
  FP16_SKIPS in a row), or a loss above LOSS_FACTOR × the lowest running average of the loss so far
  (an average over ~10 steps). The step is not taken; no checkpoint with non-finite weights is saved.
- Out of memory in the training step: each micro-batch runs in twice as many pieces (micro-batch halves,
  gradient accumulation doubles, the effective batch and the step count unchanged); the optimizer step's
  micro-batches run again from zeroed gradients. The sizes in force go to run_dir/batch_sizes.json,
  which --resume reads. The data loader keeps drawing training.batch_size rows, so the data order is the
  configured one.
- SIGTERM / Ctrl-C (Interruption): the handler only sets a flag; at the next step's end the run saves a
  checkpoint and stops (exit 143 / 130); a second Ctrl-C raises KeyboardInterrupt at once.
- Saves (FaultTolerance._save_checkpoint): complete-only, see dsum.runs.checkpoints.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import threading
from pathlib import Path

import torch
from transformers import TrainerCallback

from dsum.runs.checkpoints import check_free_space, is_disk_error, save_failed, write_manifest
from dsum.util.atomic import write_json
from dsum.util.errors import RunStopped
from dsum.util.oom import free_memory, is_out_of_memory, out_of_memory

log = logging.getLogger(__name__)

LOSS_FACTOR = 10  # the learning_rate=50 demo jumps from 7.6 to 1.8e4 at step 3; healthy runs stay within ~2×
EMA_WEIGHT = 0.1  # the running average's weight of the newest step (~10 steps)
FP16_SKIPS = 20  # fp16 steps the scaler may skip in a row (its scale then has fallen by 2^20)
DIVERGED_EXIT = 3
SIGNAL_EXIT = {signal.SIGTERM: 143, signal.SIGINT: 130}
BATCH_SIZES = "batch_sizes.json"
TRAIN_SETTINGS = (
    "set training.gradient_checkpointing=true, lower model.max_source_length / model.max_target_length, "
    "or train LoRA (lora:, with lora.quantization=4bit)"
)


class DivergenceGuard:
    """The rule, step by step: `problem(loss, grad_norm)` says why this step must not be taken, or None."""

    def __init__(self, fp16: bool):
        self.fp16 = fp16
        self.average: float | None = None
        self.lowest: float | None = None
        self.skipped = 0

    def problem(self, loss: float, grad_norm: float | None) -> str | None:
        if not math.isfinite(loss):
            return f"the loss is {loss}"
        if grad_norm is not None and not math.isfinite(grad_norm):
            if not self.fp16:
                return f"the gradient norm is {grad_norm}"
            self.skipped += 1  # the loss scaler skips this step and lowers its scale
            if self.skipped >= FP16_SKIPS:
                return f"fp16's loss scaler skipped {self.skipped} steps in a row (overflowing gradients)"
        else:
            self.skipped = 0
        if self.lowest is not None and loss > LOSS_FACTOR * self.lowest:
            return f"the loss {loss:.4g} is over {LOSS_FACTOR} × its lowest running average {self.lowest:.4g}"
        self.average = loss if self.average is None else (1 - EMA_WEIGHT) * self.average + EMA_WEIGHT * loss
        self.lowest = self.average if self.lowest is None else min(self.lowest, self.average)
        return None


class FaultTolerance:
    """Trainer overrides (a mixin before Trainer): the divergence check, the out-of-memory back-off and
    complete-only checkpoints. State lives in `faults` (a Faults, set by guard_training)."""

    faults: "Faults | None" = None
    _staging: Path | None = None

    # -- out of memory, and the step's loss for the divergence check ------------------------------

    def training_step(self, model, inputs, num_items_in_batch=None):
        f = self.faults
        if f is None:
            return super().training_step(model, inputs, num_items_in_batch)
        if f.step != self.state.global_step:  # the first micro-batch of a new optimizer step
            f.step, f.inputs, f.loss = self.state.global_step, [], 0.0
        f.inputs.append((inputs, num_items_in_batch))
        redo: list = []
        while True:
            try:
                with self.accelerator.no_sync(model):  # earlier micro-batches again: their loss is counted already
                    for earlier, items in redo:
                        self._in_pieces(model, earlier, items)
                loss = self._in_pieces(model, inputs, num_items_in_batch)
                break
            except RuntimeError as exc:
                if not is_out_of_memory(exc):
                    raise
                self._back_off(model, inputs, exc)
                redo = f.inputs[:-1]
        f.loss += float(loss)
        return loss

    def _in_pieces(self, model, inputs, num_items_in_batch):
        """One micro-batch run as `split` pieces, their gradients added up as the whole one's would be."""
        split = self.faults.split
        if split == 1:
            return super().training_step(model, inputs, num_items_in_batch)
        rows = rows_of(inputs)
        n = min(split, rows)
        columns = {
            key: torch.tensor_split(value, n) if torch.is_tensor(value) and value.dim() and len(value) == rows else [value] * n
            for key, value in inputs.items()
        }
        pieces = [{key: column[i] for key, column in columns.items()} for i in range(n)]
        accumulation, total = self.current_gradient_accumulation_steps, 0.0
        try:
            for i, piece in enumerate(pieces):
                # A loss averaged over its piece weighs by the piece's share of the rows (summed losses,
                # divided by num_items_in_batch, need nothing: the Trainer then skips this division).
                self.current_gradient_accumulation_steps = accumulation * rows / rows_of(piece)
                sync = contextlib.nullcontext() if i == len(pieces) - 1 else self.accelerator.no_sync(model)
                with sync:
                    total = total + super().training_step(model, piece, num_items_in_batch)
        finally:
            self.current_gradient_accumulation_steps = accumulation
        return total

    def _back_off(self, model, inputs, exc: BaseException) -> None:
        f, rows = self.faults, rows_of(inputs)
        if math.ceil(rows / f.split) <= 1:
            raise out_of_memory("in the training step", exc, TRAIN_SETTINGS) from None
        model.zero_grad(set_to_none=True)  # a backward that failed half-way leaves partial gradients
        free_memory()
        f.split *= 2
        f.record_sizes()
        args = self.args
        log.warning(
            f"out of memory in the training step (step {self.state.global_step + 1}, micro-batch of {math.ceil(rows * 2 / f.split)}): "
            f"micro-batch {math.ceil(args.per_device_train_batch_size / f.split)} × gradient accumulation "
            f"{args.gradient_accumulation_steps * f.split} from now on (effective batch kept); this step runs again. "
            f"Kept in {BATCH_SIZES} for --resume"
        )

    # -- divergence -------------------------------------------------------------------------------

    def _get_grad_norm(self, model, grad_norm=None):
        grad_norm = super()._get_grad_norm(model, grad_norm)
        if self.faults is not None:  # the last moment before the optimizer steps
            self.faults.check_step(self, grad_norm)
        return grad_norm

    # -- complete-only checkpoints (dsum.runs.checkpoints) ----------------------------------------

    def _get_output_dir(self, trial) -> str:
        return str(self._staging) if self._staging is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        step, main = self.state.global_step, self.args.should_save
        folder = Path(super()._get_output_dir(trial))
        if self.faults is not None:
            self.faults.check_weights(self, model)
        if main:
            folder.mkdir(parents=True, exist_ok=True)
            check_free_space(folder, step)
        staging = self._staging = folder / f".partial-checkpoint-{step}"
        try:
            super()._save_checkpoint(model, trial)
            self.accelerator.wait_for_everyone()  # every rank's RNG state is in
            if main:
                self._complete(staging / f"checkpoint-{step}", folder / f"checkpoint-{step}")
        except Exception as exc:
            if main:
                shutil.rmtree(staging, ignore_errors=True)
            if is_disk_error(exc):
                raise save_failed(step, folder, exc) from None
            raise
        finally:
            self._staging = None

    def _complete(self, staged: Path, final: Path) -> None:
        """Point the state at the final name, write the manifest last, rename; rotate only then."""
        from transformers.trainer_utils import rotate_checkpoints

        best = self.state.best_model_checkpoint
        if best and Path(best).parent == staged.parent:  # the Trainer found this very checkpoint best
            self.state.best_model_checkpoint = str(final)
            self.state.save_to_json(str(staged / "trainer_state.json"))
        write_manifest(staged)
        if final.exists():  # the same step saved before (a resumed run); the new one replaces it
            shutil.rmtree(final)
        staged.rename(final)
        staged.parent.rmdir()
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself on disk
        finally:
            os.close(fd)
        rotate_checkpoints(str(final.parent), self.args.save_total_limit, self.state.best_model_checkpoint)


def rows_of(inputs: dict) -> int:
    return len(inputs.get("input_ids", next(v for v in inputs.values() if torch.is_tensor(v))))


class Interruption(TrainerCallback):
    """SIGTERM / Ctrl-C: the handler sets a flag; the step that ends next saves a checkpoint and the run stops."""

    def __init__(self):
        self.signum: int | None = None
        self.previous: dict = {}

    def handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without the save
        self.signum = self.signum or signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for signum in SIGNAL_EXIT:
                self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def on_step_end(self, args, state, control, **kwargs):
        if self.signum is not None:
            control.should_save, control.should_training_stop = True, True
            control.should_evaluate = False  # an evaluation would eat the scheduler's grace period
        return control

    def on_save(self, args, state, control, **kwargs):
        if self.signum is not None:
            raise self.stopped(state.global_step, args.output_dir)

    def stopped(self, step: int, folder: str) -> RunStopped:
        name = signal.Signals(self.signum).name
        return RunStopped(
            f"{name} received: checkpoint-{step} saved under {folder}; continue with `dsum train ... --resume`",
            "interrupted", SIGNAL_EXIT[self.signum],
        )


class Faults:
    """One run's fault state: the divergence guard, the training split, the signal flag."""

    def __init__(self, cfg, run_dir: Path, precision: str, split: int = 1):
        self.cfg, self.run_dir = cfg, run_dir
        self.guard = DivergenceGuard(precision == "fp16")
        self.interruption = Interruption()
        self.split = split
        self.step, self.inputs, self.loss = -1, [], 0.0

    def __enter__(self):
        self.interruption.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.interruption.__exit__(*exc)

    def raise_if_interrupted(self, step: int) -> None:
        """A signal that came after the last training step (the final evaluation): stop with what is saved."""
        if self.interruption.signum is not None:
            raise self.interruption.stopped(step, str(self.run_dir / "checkpoints"))

    def record_sizes(self) -> None:
        t = self.cfg.training
        if int(os.environ.get("RANK", "0")) == 0:
            write_json(self.run_dir / BATCH_SIZES, {
                "batch_size": math.ceil(t.batch_size / self.split),
                "gradient_accumulation_steps": t.gradient_accumulation_steps * self.split,
                "split": self.split,
                "configured": {"batch_size": t.batch_size, "gradient_accumulation_steps": t.gradient_accumulation_steps},
            })

    def check_step(self, trainer, grad_norm) -> None:
        loss = torch.tensor(self.loss, device=trainer.args.device)
        if trainer.accelerator.num_processes > 1:
            loss = trainer.accelerator.reduce(loss, "mean")  # every rank decides on the same number
            self.agree_on_split(trainer)
        norm = None if grad_norm is None else float(grad_norm)
        if problem := self.guard.problem(float(loss), norm):
            raise self.diverged(trainer, trainer.state.global_step + 1, problem)

    def agree_on_split(self, trainer) -> None:
        """torchrun: every rank takes the largest split any rank backed off to (rank 0 records it)."""
        import torch.distributed as dist

        split = torch.tensor(self.split, device=trainer.args.device)
        dist.all_reduce(split, op=dist.ReduceOp.MAX)
        if int(split) != self.split:
            self.split = int(split)
            self.record_sizes()

    def check_weights(self, trainer, model) -> None:
        """No checkpoint of non-finite weights, whatever let them in."""
        if not all(torch.isfinite(p).all() for p in model.parameters() if p.requires_grad):
            raise self.diverged(trainer, trainer.state.global_step, "the weights hold NaN or inf")

    def diverged(self, trainer, step: int, problem: str) -> RunStopped:
        state, t = trainer.state, self.cfg.training
        if state.best_model_checkpoint:
            kept = f"the best checkpoint is kept: {state.best_model_checkpoint} (dev {state.best_metric:.2f})"
        else:
            kept = "no checkpoint was saved before it"
        tries = [f"a lower training.learning_rate (now {t.learning_rate:g})", "a longer training.warmup_ratio"]
        if trainer.args.fp16:
            tries.insert(1, "training.precision=bf16 instead of fp16")
        return RunStopped(
            f"training diverged at step {step} of {state.max_steps}: {problem}; the step was not taken and {kept}; "
            f"try {', '.join(tries)}",
            "diverged", DIVERGED_EXIT,
        )


def saved_split(run_dir: Path) -> int:
    """The split an earlier out of memory left in force (batch_sizes.json), 1 if none."""
    from dsum.runs.read import read_json

    return int(read_json(Path(run_dir) / BATCH_SIZES).get("split", 1))


def guard_training(trainer, cfg, run_dir: Path, precision: str) -> Faults:
    """Attach the fault handling to a DsumTrainer; a resumed run takes its saved micro-batch split."""
    faults = Faults(cfg, run_dir, precision, saved_split(run_dir))
    if faults.split > 1:
        t = cfg.training
        log.info(f"batch sizes from {BATCH_SIZES}: micro-batch {math.ceil(t.batch_size / faults.split)} × gradient "
                 f"accumulation {t.gradient_accumulation_steps * faults.split} (an earlier out of memory)")
    trainer.faults = faults
    trainer.add_callback(faults.interruption)
    return faults
