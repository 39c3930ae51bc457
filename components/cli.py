"""What every command-line tool here (render, doctor, talos, hostprep, stacks) does at its
edge: find the project folder and the stack, and run ``main`` so that no
Python traceback reaches the user.

The stack: ``--stack NAME`` reads ``Pulumi.NAME.yaml`` in the project folder;
``--stack PATH`` (a ``Pulumi.<name>.yaml`` file) reads that file. Without
``--stack``, the only ``Pulumi.<name>.yaml`` in the folder is used, and the
tool says so on stderr; with several, ``--stack`` is required and the message
lists them. There is no silent default.

Each tool turns the failures it expects (a bad stack file, an unreachable
host) into one message itself. This is the last line behind that: Ctrl-C, a
closed pipe (``| head``), and anything unforeseen become one line on stderr
and an exit code. ``PTG_DEBUG=1`` shows the traceback of an unforeseen error.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

EXIT_INTERRUPTED = 130  # the shell's 128 + SIGINT
EXIT_INTERNAL = 70  # sysexits.h EX_SOFTWARE
PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROJECT_DIR_ENV = "PTG_PROJECT_DIR"
STACK_GLOB = "Pulumi.*.yaml"
_STACK_FILE = re.compile(r"^Pulumi\.(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)\.yaml$")


# The console script (tools/gpunode.py) sets this, so that each tool's
# usage line names the command the user typed: "gpunode render", not
# "python -m components.render".
INVOKED_AS = ""
_RST_LITERAL = re.compile(r"``([^`]+)``")
_BACKTICKED = re.compile(r"`([^`]+)`")


def program(tool: str) -> str:
    """The name a tool's usage line shows: ``gpunode <tool>`` under the console
    script, else ``python -m components.<tool>``."""
    return f"{INVOKED_AS} {tool}" if INVOKED_AS else f"python -m components.{tool}"


def plain(text: str) -> str:
    """Help text as plain text: ``literal`` becomes literal, `command` becomes "command"."""
    return _BACKTICKED.sub(r'"\1"', _RST_LITERAL.sub(r"\1", text))


class PlainParser(argparse.ArgumentParser):
    """An ArgumentParser whose help and usage are plain text (no reStructuredText
    backticks from the docstrings they are made of). Sub-command parsers
    inherit the class."""

    def format_help(self) -> str:
        return plain(super().format_help())

    def format_usage(self) -> str:
        return plain(super().format_usage())


def default_project_dir() -> Path:
    """``$PTG_PROJECT_DIR`` when set, else this project's folder."""
    return Path(os.environ.get(PROJECT_DIR_ENV) or PROJECT_ROOT)


def add_project_dir(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The one ``--project-dir``: where every tool looks for Pulumi.<stack>.yaml."""
    parser.add_argument("--project-dir", type=Path, default=default_project_dir(), metavar="DIR",
                        help=f"the folder that holds the Pulumi.<stack>.yaml files (default: ${PROJECT_DIR_ENV} when set, "
                             f"else this project, {PROJECT_ROOT})")


def add_stack(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, required_text: str = "") -> None:
    """The one ``--stack``, the same in every tool."""
    parser.add_argument("--stack", metavar="STACK", default=None,
                        help="the stack: reads Pulumi.<STACK>.yaml in the project folder; a path to a Pulumi.<name>.yaml "
                             "file works too (default: the only Pulumi.<name>.yaml in the project folder; with several, "
                             f"required{required_text})")


def stack_files(directory: Path) -> list[Path]:
    """The ``Pulumi.<name>.yaml`` files of a folder, by name (``Pulumi.yaml`` is the project, not a stack)."""
    try:
        return sorted(path for path in directory.glob(STACK_GLOB) if _STACK_FILE.match(path.name))
    except OSError:
        return []


def stack_name(path: Path) -> str:
    """``Pulumi.homelab.yaml`` -> ``homelab``."""
    return path.name[len("Pulumi."):-len(".yaml")]


@dataclass(frozen=True)
class Stack:
    """The stack a tool works on: its name and its file."""

    name: str
    path: Path
    chosen: str  # how it was chosen, for the tool's one line: "" when named with --stack


class StackChoiceError(ValueError):
    """No stack could be chosen: the message says why and what to give."""


def choose_stack(directory: Path, stack: str | None) -> Stack:
    """The stack ``--stack`` names (a name or a path), or the only one in the folder.

    Pure apart from listing the folder; the tools print ``Stack.chosen``."""
    if stack is not None:
        return _named_stack(directory, stack)
    found = stack_files(directory)
    if not found:
        if not directory.is_dir():
            raise StackChoiceError(f"--project-dir {directory}: not a folder")
        raise StackChoiceError(f"no Pulumi.<stack>.yaml in {directory}: copy Pulumi.homelab.yaml from this project to "
                               "Pulumi.<your node>.yaml there and describe your node (README, Quick start), or give --stack")
    if len(found) > 1:
        names = ", ".join(stack_name(path) for path in found)
        raise StackChoiceError(f"--stack is required: {directory} holds {len(found)} stack files ({names}); "
                               f"give one, e.g. --stack {stack_name(found[0])}")
    name = stack_name(found[0])
    return Stack(name, found[0], f"using stack {name} ({found[0]}, the only stack file in {directory}; --stack chooses another)")


def stack_from_args(args: argparse.Namespace, prog: str, err: TextIO | None = None) -> Stack | None:
    """``choose_stack`` for a tool's ``--stack``/``--project-dir``: says on
    ``err`` which stack it took when none was named; None (after one line
    saying why) when none can be chosen: the tool exits 2."""
    err = err or sys.stderr
    try:
        stack = choose_stack(args.project_dir, args.stack)
    except StackChoiceError as error:
        print(f"{prog}: {error}", file=err)
        return None
    if stack.chosen:
        print(f"{prog}: {stack.chosen}", file=err)
    return stack


def _named_stack(directory: Path, stack: str) -> Stack:
    candidate = Path(stack).expanduser()
    looks_like_path = "/" in stack or stack.endswith((".yaml", ".yml"))
    if not looks_like_path:
        if not _STACK_FILE.match(f"Pulumi.{stack}.yaml"):
            raise StackChoiceError(f"--stack {stack!r} is not a stack name: letters, digits, '-', '_' and '.', "
                                   "e.g. homelab for Pulumi.homelab.yaml, or a path to a Pulumi.<name>.yaml file")
        return Stack(stack, directory / f"Pulumi.{stack}.yaml", "")
    match = _STACK_FILE.match(candidate.name)
    if not match:
        raise StackChoiceError(f"--stack {stack}: a stack file is named Pulumi.<stack>.yaml (Pulumi reads the stack "
                               f"name from it), e.g. Pulumi.mynode.yaml; rename the file or give the stack's name")
    if candidate.parent == Path(".") and not candidate.exists():
        candidate = directory / candidate.name  # a bare file name: the project folder's, unless it is here
    return Stack(match.group("name"), candidate, "")


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
