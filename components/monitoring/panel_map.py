"""``python -m components.monitoring.panel_map``, the form earlier docs
used: the panel-map tool (tools/panel_map.py), run as ``python -m
tools.panel_map`` runs it."""

import sys

from components.cli import run
from tools.panel_map import main

if __name__ == "__main__":
    sys.exit(run("panel_map", main))
