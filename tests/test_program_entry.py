"""`python __main__.py` by hand (no Pulumi engine): one line saying the
program runs under `pulumi preview`/`up` and how to see it offline, exit 2,
from any folder; under the engine (here its mocks) the program runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("cwd", ["project", "elsewhere"])
def test_running_the_program_by_hand_says_what_to_run_instead(tmp_path: Path, cwd: str) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "__main__.py")], cwd=ROOT if cwd == "project" else tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "pulumi preview" in lines[0] and "pulumi up" in lines[0] and "python -m components.render --stack STACK" in lines[0]


def test_under_the_engine_the_program_runs(homelab) -> None:
    from tests.conftest import run_main

    run = run_main(homelab)
    # The reference stack adopts its VM (vm.source: existing): one resource owns the GPU slots, none creates a VM.
    adopt = [reg for reg in run.registrations if reg.name.endswith("-gpu-slots")]
    assert len(adopt) == 1 and run.by_type("proxmoxve:index/vmLegacy:VmLegacy") == []
    assert run.outputs["vmId"] == 1105
