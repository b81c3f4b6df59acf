"""UserError, the one exception type for problems a user can fix (bad file, bad config, missing GPU...),
and RunStopped, a run stopped by a fault it survived (see README "When things go wrong").

The CLI turns a UserError into a single line on stderr and exit code 2, a RunStopped into a single line and
its own exit code; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user caused and can fix; the message names the problem and the fix."""


class RunStopped(Exception):
    """A run that stopped on a fault it survived (divergence, a signal, a failed save, memory).

    What it kept is on disk; the run directory is marked `status`; the CLI prints the one-line message
    (what happened, what was kept, what to try) and exits with `exit_code` (see README "When things go wrong").
    """

    def __init__(self, message: str, status: str, exit_code: int):
        super().__init__(message)
        self.status, self.exit_code = status, exit_code


class RunInterrupted(KeyboardInterrupt):
    """A RunStopped of status "interrupted" carried through an Optuna study (`dsum tune`) as a KeyboardInterrupt,
    so that the study stops as on Ctrl-C instead of going on to its next trial. Same fields as RunStopped."""

    def __init__(self, message: str, status: str, exit_code: int):
        super().__init__(message)
        self.status, self.exit_code = status, exit_code


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (its type's name when it has none), for a one-line error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
