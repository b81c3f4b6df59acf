"""Several `dsum` commands in one fresh interpreter, one after another as a user types them, each preceded by a
marker line on stdout and on stderr (tests/conftest.py:demo_console reads them apart). One interpreter: the
Trainer's import (~13 s) is paid once; a fresh one: what libraries print at import, and through handlers bound
to the real stderr, shows as a user sees it.

    python tests/console_session.py '[["train", "-c", "configs/demo.yaml"], ["-q", "predict", ...]]'
"""

import json
import sys

from dsum.cli import main
from dsum.util.verbosity import set_verbosity

MARK = "=== dsum "

def run(commands: list[list[str]]) -> None:
    for args in commands:
        for stream in (sys.stdout, sys.stderr):
            stream.write(MARK + json.dumps(args) + "\n")
            stream.flush()
        sys.argv = ["dsum", *args]
        try:
            main()
        except SystemExit as exc:  # click exits after every command
            if exc.code:
                sys.stderr.write(f"{MARK}exit {exc.code}\n")
        sys.stdout.flush()
        sys.stderr.flush()
        set_verbosity("normal")  # what -q / -v set lasts for the process; the next command starts as a new one would


if __name__ == "__main__":
    run(json.loads(sys.argv[1]))
