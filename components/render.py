"""``python -m components.render``, the form the docs use: the render tool
(tools/render.py), run as ``python -m tools.render`` runs it."""

import sys

from components.cli import run
from tools.render import main

if __name__ == "__main__":
    sys.exit(run("render", main))
