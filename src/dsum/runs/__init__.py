"""Run directories, the unit of record.

- `directory.py`: owns a run directory: its name (claimed atomically), status, environment, resume choice.
- `read.py`: reads run directories: the runs table, compare (with a paired bootstrap), plots.
- `record.py`: record.md, the team's experiment template filled in.
- `tracking.py`: W&B, MLflow, TensorBoard behind one small interface.
"""
