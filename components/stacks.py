"""``python -m components.stacks``, the form the docs and setup.sh's users
know: the stacks tool (tools/stacks.py), run as ``python -m tools.stacks`` runs it."""

import sys

from components.cli import run
from tools.stacks import main

if __name__ == "__main__":
    sys.exit(run("stacks", main))
