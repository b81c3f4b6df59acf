"""Plumbing every part uses.

- `errors.py`: UserError, the one exception for problems a user can fix.
- `atomic.py`: whole-or-nothing file writes. `envfile.py`: secrets from `.env`.
- `progress.py`: the console progress displays draw on. `verbosity.py`: `dsum -q` / `-v`.
"""
