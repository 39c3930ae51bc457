"""``python -m components.vm``: the VM tool (tools/vm.py), run as
``python -m tools.vm`` runs it."""

import sys

from components.cli import run
from tools.vm import main

if __name__ == "__main__":
    sys.exit(run("python -m components.vm", main))
