"""``python -m components.hostprep``: the host-prep tool (tools/hostprep.py),
run as ``python -m tools.hostprep`` runs it."""

import sys

from tools.hostprep import main

if __name__ == "__main__":
    sys.exit(main())
