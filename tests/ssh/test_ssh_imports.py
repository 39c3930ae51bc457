"""What loading the SSH room costs: paramiko without invoke (its
ssh_config `Match exec` helper, which the program never uses)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(n for n, m in sys.modules.items() if m is not None)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_the_ssh_room_loads_paramiko_without_invoke() -> None:
    loaded = _loaded_after("import components.ssh.transport, components.ssh.connect")
    assert "paramiko" in loaded and "paramiko.config" in loaded
    assert not any(name == "invoke" or name.startswith("invoke.") for name in loaded), sorted(n for n in loaded if "invoke" in n)


def test_an_invoke_loaded_before_the_ssh_room_is_kept() -> None:
    loaded = _loaded_after("import invoke; import components.ssh.transport; assert sys.modules['invoke'] is not None")
    assert "invoke" in loaded
