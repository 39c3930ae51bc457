"""The talosctl stand-in moved to tests/stand_ins/talosctl.py (one stand-in
per tool, shared by every test); this path still runs it."""

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(str(Path(__file__).resolve().parents[1] / "stand_ins" / "talosctl.py"), run_name="__main__")
