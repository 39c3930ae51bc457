"""A throw-away virtual environment for tests that run ./setup.sh.

setup.sh installs the project into .venv in editable mode (pip install
--editable .), which points .venv/bin/gpunode at the folder it runs in. A
copy of the project in a temporary folder must not do that to the shared
.venv, so it gets its own: a venv with no packages of its own whose
site-packages reads this interpreter's (a .pth file), so nothing is
downloaded and the copy's editable install stays in the copy's venv.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path


def private_venv(where: Path) -> Path:
    """A venv at ``where`` that sees this interpreter's packages; returns ``where``."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    site = Path(subprocess.run([str(where / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True, timeout=60).stdout.strip())
    (site / "shared-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return where
