"""How much dsum and the libraries it drives say: `dsum -q ...`, `dsum -v ...`, `dsum.set_verbosity()`.

One word sets three loggers: dsum's own, transformers' and Optuna's. The word also goes into the
environment (DSUM_VERBOSITY, TRANSFORMERS_VERBOSITY), so tuning workers and torchrun ranks, which
are new processes, say as much as the command that started them. transformers and Optuna are set
directly only when already imported: importing them here would add seconds to `dsum score`;
transformers reads its variable when it is first imported and dsum.verbs.tune calls `apply_to_optuna`.
"""

from __future__ import annotations

import logging
import os
import sys

from dsum.util.errors import UserError

ENV = "DSUM_VERBOSITY"

# level → (dsum's logging level, transformers' TRANSFORMERS_VERBOSITY word, Optuna's logging level)
LEVELS = {
    "quiet": (logging.WARNING, "error", logging.WARNING),
    "normal": (logging.INFO, "warning", logging.INFO),  # the libraries' own defaults
    "verbose": (logging.DEBUG, "info", logging.DEBUG),
}


def set_verbosity(level: str) -> None:
    """`quiet` (warnings and errors only), `normal` (the defaults) or `verbose` (debug/info output)."""
    if level not in LEVELS:
        raise UserError(f"verbosity must be one of {', '.join(LEVELS)}, not {level!r}")
    dsum_level, transformers_word, _ = LEVELS[level]
    os.environ[ENV] = level
    os.environ["TRANSFORMERS_VERBOSITY"] = transformers_word
    logging.getLogger("dsum").setLevel(dsum_level)
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity(transformers_logging.log_levels[transformers_word])
    apply_to_optuna()


def apply_to_optuna() -> None:
    """Give Optuna the level DSUM_VERBOSITY asks for (nothing when it is unset or Optuna is not loaded)."""
    level = os.environ.get(ENV)
    if level in LEVELS and "optuna" in sys.modules:
        import optuna

        optuna.logging.set_verbosity(LEVELS[level][2])
