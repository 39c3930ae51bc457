"""What every command-line tool here (render, doctor, talos, hostprep, stacks) does at its
edge: run ``main`` so that no Python traceback reaches the user.

Each tool turns the failures it expects (a bad stack file, an unreachable
host) into one message itself. This is the last line behind that: Ctrl-C, a
closed pipe (``| head``), and anything unforeseen become one line on stderr
and an exit code. ``PTG_DEBUG=1`` shows the traceback of an unforeseen error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

EXIT_INTERRUPTED = 130  # the shell's 128 + SIGINT
EXIT_INTERNAL = 70  # sysexits.h EX_SOFTWARE
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def add_project_dir(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The one ``--project-dir``: where every tool looks for Pulumi.<stack>.yaml."""
    parser.add_argument("--project-dir", type=Path, default=PROJECT_ROOT, metavar="DIR",
                        help=f"the folder that holds the Pulumi.<stack>.yaml files (default: this project, {PROJECT_ROOT})")


def run(prog: str, main: Callable[[], int]) -> int:
    """``main()``'s exit code, or the code for how it was cut short."""
    try:
        return main()
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): nothing more to say, and
        # Python's own flush at exit must not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:  # noqa: BLE001 - the point of this function
        if os.environ.get("PTG_DEBUG") == "1":
            raise
        print(f"{prog}: unexpected error ({type(error).__name__}: {error}); this is a bug: "
              "rerun with PTG_DEBUG=1 to see where it happened, and report it", file=sys.stderr)
        return EXIT_INTERNAL
