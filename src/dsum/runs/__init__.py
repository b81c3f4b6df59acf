"""Run directories, the unit of record.

- `directory.py`: owns a run directory: its name (claimed atomically), status, environment, resume choice.
- `read.py`: reads run directories: the runs table, compare (with a paired bootstrap), plots.
- `record.py`: record.md, the team's experiment template filled in.
- `tracking.py`: W&B, MLflow, TensorBoard behind one small interface; best effort when a server is down.
- `checkpoints.py`: checkpoints that count only when complete (manifest last, rename), the free-space check,
  and the complete checkpoint `--resume` continues from (broken ones set aside).
"""
