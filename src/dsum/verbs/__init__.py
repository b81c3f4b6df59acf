"""The code each verb runs; `dsum.cli` parses flags and renders, these do the work and return results.

- `train.py`: `dsum train` (data → features → Trainer → dev score → submission); `trainer.py`: the Hugging Face
  Trainer as dsum sets it up (collators, label-only and R-Drop losses, dev evaluation, arguments, callbacks);
  `faults.py`: what a run survives (divergence, out of memory, SIGTERM / Ctrl-C, saves that fail).
- `predict.py`: `dsum predict` and the end of every training run: a split's summaries, checked.
- `folds.py`: `dsum train --folds K`. `tune.py`: `dsum tune` (Optuna).
- `average.py`: `dsum average`. `export.py`: `dsum export`. `ensemble.py`: `dsum ensemble mbr`.
- `doctor.py`: `dsum doctor`. `augment.py`: `dsum augment`.
"""
