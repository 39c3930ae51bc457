"""``python -m components.talos``: the Talos tool (tools/talos.py), run as
``python -m tools.talos`` runs it."""

import sys

from components.cli import run
from tools.talos import main

if __name__ == "__main__":
    sys.exit(run("talos", main))
