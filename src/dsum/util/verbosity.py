"""How much dsum and the libraries it drives say: `dsum -q ...`, `dsum -v ...`, `dsum.set_verbosity()`.

One word sets three loggers: dsum's own, transformers' and Optuna's. The word also goes into the
environment (DSUM_VERBOSITY, TRANSFORMERS_VERBOSITY), so tuning workers and torchrun ranks, which
are new processes, say as much as the command that started them. transformers and Optuna are set
directly only when already imported: importing them here would add seconds to `dsum score`;
transformers reads its variable when it is first imported and dsum.verbs.tune calls `apply_to_optuna`.

dsum's messages go through `logging.getLogger("dsum.<module>")`; the one handler on the "dsum" logger
(installed when dsum is imported) writes info to stdout as plain lines and warnings and errors to
stderr as `warning: ...` / `error: ...`, to the streams of the moment (pytest's capture, a Jupyter
cell). `quiet` leaves warnings and errors, and hides progress displays (dsum.util.progress). The libraries'
own progress bars and their warnings that say nothing to a user show only when verbose (dsum.util.library_noise).
"""

from __future__ import annotations

import logging
import os
import sys

from dsum.util import library_noise
from dsum.util.errors import UserError

ENV = "DSUM_VERBOSITY"

# level → (dsum's logging level, transformers' TRANSFORMERS_VERBOSITY word, Optuna's logging level)
LEVELS = {
    "quiet": (logging.WARNING, "error", logging.WARNING),
    # transformers' default; Optuna's per-trial info lines repeat what dsum tune's display and table show
    "normal": (logging.INFO, "warning", logging.WARNING),
    "verbose": (logging.DEBUG, "info", logging.DEBUG),
}


class ConsoleHandler(logging.Handler):
    """Info on stdout, warnings and errors on stderr, each message one line as the library wrote it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if record.levelno >= logging.WARNING:
                stream = sys.stderr
                message = f"{record.levelname.lower()}: {message}"
            else:
                stream = sys.stdout
            stream.write(message + "\n")
            stream.flush()
        except Exception:  # a closed stream must not end the run
            self.handleError(record)


def install_console_handler() -> logging.Logger:
    """The "dsum" logger with its one console handler, at the level DSUM_VERBOSITY names (default normal).

    It does not propagate: a root handler set up by the user's program would print every line twice.
    """
    logger = logging.getLogger("dsum")
    if not any(isinstance(h, ConsoleHandler) for h in logger.handlers):
        logger.addHandler(ConsoleHandler())
        logger.propagate = False
        logger.setLevel(LEVELS.get(os.environ.get(ENV, "normal"), LEVELS["normal"])[0])
    return logger


def is_quiet() -> bool:
    """True when dsum says only warnings and errors (`dsum -q`, set_verbosity("quiet"))."""
    return not logging.getLogger("dsum").isEnabledFor(logging.INFO)


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
    library_noise.apply(level)


def apply_to_optuna() -> None:
    """Give Optuna the level DSUM_VERBOSITY asks for (normal when it is unset; nothing when Optuna is not loaded)."""
    level = os.environ.get(ENV) or "normal"
    if level in LEVELS and "optuna" in sys.modules:
        import optuna

        optuna.logging.set_verbosity(LEVELS[level][2])


# bitsandbytes' CPU backend logs this at import whenever the optional `kernels` package is missing, and peft and
# the Trainer import bitsandbytes on every LLM command: a fallback it then uses, not a problem. Dropped before
# bitsandbytes is imported (its logger filters it); every other bitsandbytes message still reaches the user.
BITSANDBYTES_KERNELS_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"


def drop_bitsandbytes_kernels_notice(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(BITSANDBYTES_KERNELS_NOTICE)


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(drop_bitsandbytes_kernels_notice)
install_console_handler()
library_noise.apply(os.environ.get(ENV) or "normal")
