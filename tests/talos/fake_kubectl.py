"""Kept for the tests that run this path: the kubectl stand-in is
tests/stand_ins/kubectl.py (its cluster: tests/stand_ins/kubectl_cluster.py)."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.stand_ins.kubectl import main  # noqa: E402

if __name__ == "__main__":
    os.environ.pop("FAKE_CLI_DIR", None)  # this path always serves the cluster in $FAKE_KUBE_STATE
    sys.exit(main(sys.argv[1:]))
