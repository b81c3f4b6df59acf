"""Data in and out: the competition files, their checks, the clean-up rules, submissions.

- `files.py`: the one reader of data files (CSV and JSON lines, any role: train, dev, test, sample, predictions);
  the writer of dev predictions files.
- `splits.py`: a training run's train, dev and test examples, each file read once, cleaned as the model sees them.
- `check.py`: `dsum data check`, every problem of a file, read through files.py.
- `text.py`: clean-up rules and `#...#` special tokens (strings in, strings out; no file I/O).
- `korean.py`: is a summary Korean, and the tokens that would write another script.
- `submission.py`: the one writer and checker of submissions.
"""
