"""gpunode: every offline and host tool of this project as one command.

    gpunode render    --stack S [--out DIR | --flux DIR] [--host-facts FILE] [--json]
    gpunode stacks    {check,which} [--stack S ...] [--json]
    gpunode doctor    --stack S [--layer L] [--identity KEY] [--json]
    gpunode hostprep  {facts,plan,apply,verify,undo} --stack S [--identity KEY] [--json]
    gpunode talos     {schematic-id,schematic,patch,config,upgrade-plan} [--stack S] [--json]
    gpunode vm        {plan,apply,undo} --stack S [--json]

Each sub-command is the tool "python -m components.<name>" runs, with the same
flags: --stack (a name, Pulumi.<name>.yaml in the project folder, or the path
of a Pulumi.<name>.yaml file; without it the folder's only stack file),
--project-dir (default: $PTG_PROJECT_DIR, else this project's folder, so the
command works from any folder) and --json. "gpunode <command> --help" says
more. Exit codes are the sub-command's own; 2 also for an unknown command.
./setup.sh installs the command into .venv/bin (pip install --editable).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import import_module

from components import cli

# name -> (module, what it does). Each module has main(argv) -> exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "render": ("tools.render", "write everything a stack would apply into a folder, offline"),
    "stacks": ("tools.stacks", "check that the node stacks agree; print the stack a tool would use"),
    "doctor": ("tools.doctor.cli", "run the guide's checks on each layer and say how to fix what fails"),
    "hostprep": ("tools.hostprep", "read, plan, prepare or undo the Proxmox host's GPU passthrough"),
    "talos": ("tools.talos", "the Talos schematic, machine-config patch, adopted config and upgrade route"),
    "vm": ("tools.vm", "plan, adopt or undo the existing VM's GPU slots and balloon"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name.ljust(width)}  {text}" for name, (_, text) in COMMANDS.items()]
    return cli.plain(__doc__.split("\n\n", 1)[0] + "\n\nusage: gpunode COMMAND [ARGS]\n\ncommands:\n" + "\n".join(lines)
                     + "\n\n" + __doc__.split("\n\n", 2)[2])


def _tool(name: str) -> Callable[[list[str]], int]:
    return import_module(COMMANDS[name][0]).main


def dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help") and len(argv) == 1:
        print(usage(), file=sys.stdout if argv else sys.stderr, end="")
        return 0 if argv else 2
    if argv[0] == "help":
        argv = [argv[1], "--help"]
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"gpunode: {name!r} is not a command; the commands are {', '.join(COMMANDS)} (gpunode --help)", file=sys.stderr)
        return 2
    cli.INVOKED_AS = "gpunode"
    try:
        return _tool(name)(rest)
    except SystemExit as done:  # argparse: --help (0) and usage errors (2)
        return done.code if isinstance(done.code, int) else 2


def main() -> int:
    """The console script's entry point (pyproject.toml, [project.scripts])."""
    return cli.run("gpunode", lambda: dispatch(sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
