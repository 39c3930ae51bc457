"""The ``gpunode`` console script of an install made before the tools moved
to tools/ (its .venv/bin/gpunode imports ``components.gpunode:main``, and its
editable finder maps only ``components``): tools/gpunode.py. ./setup.sh
reinstalls such an install; until then this finds tools/ beside components/."""

import sys
from pathlib import Path

try:
    from tools.gpunode import main
except ModuleNotFoundError as missing:
    if missing.name != "tools":
        raise
    sys.path.append(str(Path(__file__).resolve().parents[1]))
    from tools.gpunode import main

if __name__ == "__main__":
    sys.exit(main())
