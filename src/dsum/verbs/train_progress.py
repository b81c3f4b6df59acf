"""Training's one progress display: a rich bar of the optimizer steps with the latest loss and learning rate,
and one line per dev evaluation (board score, ROUGE, best so far). It replaces the Trainer's tqdm bar and its
printed log dicts (build_trainer removes ProgressCallback and PrinterCallback). Hidden under `dsum -q`
(dsum.util.progress); shown by the main process only. The numbers themselves go to train_log.jsonl and the
tracker (JsonlLog, TrackerLog), whatever the verbosity.
"""

from __future__ import annotations

import atexit

from transformers import TrainerCallback

from dsum.util.progress import progress_console


def evaluation_line(epoch: float | None, step: int, logs: dict, best: float | None, loss: float | None) -> str:
    """`epoch 2 (step 20): dev board score 26.78 (R1 0.3841 R2 0.1373 RL 0.2820), best 26.78; train loss 5.843`"""
    where = f"epoch {epoch:g} (step {step})" if epoch is not None else f"step {step}"
    score = (
        f"dev board score {logs['eval_board_score']:.2f} (R1 {logs['eval_rouge1']:.4f} "
        f"R2 {logs['eval_rouge2']:.4f} RL {logs['eval_rougeL']:.4f})"
    )
    tail = f", best {best:.2f}" if best is not None else ""
    return f"{where}: {score}{tail}" + (f"; train loss {loss:.4g}" if loss is not None else "")


def stop_displays() -> None:
    """End every display still open: before the one line of a run that stopped, so the bar is not drawn after it."""
    for display in _active:
        display.stop()
    _active.clear()


class TrainingProgress(TrainerCallback):
    """The rich display of one training run (see the module's docstring)."""

    def __init__(self):
        self.progress = None
        self.task = None
        self.loss: float | None = None
        self.best: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        if not state.is_world_process_zero:
            return
        stop_displays()  # a run that ended in an exception (a pruned tune trial) left its display open
        # No refresh thread: the bar is drawn at each step, so a display left open by an exception stays still.
        self.progress = Progress(
            TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"), TimeElapsedColumn(),
            TextColumn("<"), TimeRemainingColumn(), TextColumn("{task.fields[numbers]}"),
            console=progress_console(), auto_refresh=False,
        )
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, numbers="")
        self.progress.start()
        _active.append(self.progress)
        atexit.register(self.stop)  # a crash or Ctrl-C ends the display too (and gives the cursor back)

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step, refresh=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or not logs:
            return
        if "loss" in logs:
            self.loss = float(logs["loss"])
            rate = logs.get("learning_rate")
            numbers = f"loss {self.loss:.4g}" + (f"  lr {float(rate):.3g}" if rate is not None else "")
            self.progress.update(self.task, numbers=numbers, refresh=True)
        if "eval_board_score" in logs:
            score = float(logs["eval_board_score"])
            self.best = score if self.best is None else max(self.best, score)
            line = evaluation_line(state.epoch, state.global_step, logs, self.best, self.loss)
            self.progress.console.print(line, soft_wrap=True, highlight=False)

    def on_train_end(self, args, state, control, **kwargs):
        self.stop()
        atexit.unregister(self.stop)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            if self.progress in _active:
                _active.remove(self.progress)
            self.progress = None


_active: list = []  # the display of the run in progress, if any
