"""Data in and out: the competition files, their checks, the clean-up rules, submissions.

- `files.py`: the one reader of data files (CSV and JSON lines), `dsum data check`, references per row.
- `text.py`: clean-up rules and `#...#` special tokens (strings in, strings out; no file I/O).
- `korean.py`: is a summary Korean, and the tokens that would write another script.
- `submission.py`: the one writer and checker of submissions (and of dev prediction files).
"""
