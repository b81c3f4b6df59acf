"""Plumbing every part uses.

- `errors.py`: UserError, the one exception for problems a user can fix; RunStopped, a run stopped by a fault.
- `oom.py`: out of memory told apart (CPU and CUDA), generation batches that halve instead of failing.
- `atomic.py`: whole-or-nothing file writes. `envfile.py`: secrets from `.env`.
- `progress.py`: the one progress helper (rich consoles, tqdm bars; silent under -q).
- `verbosity.py`: `dsum -q` / `-v`, and the console handler of the "dsum" logger every message goes through.
- `library_noise.py`: the libraries' progress bars and warnings that say nothing to a user, shown only under -v.
- `secrets.py`: `redact`, so that no key reaches a log, a tracker, a saved config or a record.
- `gpu.py`: the machine's torch build, NVIDIA driver and GPU memory (what `dsum doctor` reports).
- `distributed.py`: torchrun jobs: the main process, joining the process group.
- `markdown.py`: tables of the markdown files dsum writes (record.md, MBR records).
"""
