"""`python -m components.hostprep facts/plan` read the host and plan without
the Pulumi SDK: the CLI imports only what its verb uses (the SDK and its gRPC
protos cost more CPU than the whole no-op apply)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.stand_ins.proxmox_host_spec import SimSpec, t4

pytestmark = pytest.mark.sshd

REPO = Path(__file__).resolve().parents[2]

# Runs the CLI as `python -m components.hostprep` does, then, at exit, fails
# with 99 if any module of the Pulumi SDK was loaded on the way.
WRAPPER = """
import atexit, os, runpy, sys
def _check():
    loaded = sorted(m for m in sys.modules if m == "pulumi" or m.startswith("pulumi."))
    if loaded:
        sys.stderr.write("pulumi loaded: " + " ".join(loaded[:5]) + "\\n")
        sys.stderr.flush()
        os._exit(99)
atexit.register(_check)
sys.argv = ["components.hostprep", *sys.argv[1:]]
runpy.run_module("components.hostprep", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("action", ["facts", "plan"])
def test_facts_and_plan_run_without_the_pulumi_sdk(make_sim, tmp_path, action):
    sim = make_sim(SimSpec(devices=t4()))
    identity = tmp_path / "id"
    identity.write_text(sim.target.private_key)
    identity.chmod(0o600)
    hosts = tmp_path / "known_hosts"
    hosts.write_text(sim.target.host_key + "\n")
    argv = [sys.executable, "-c", WRAPPER, action, "--host", "127.0.0.1", "--port", str(sim.target.port), "--user", sim.target.user,
            "--identity", str(identity), "--known-hosts", str(hosts), "--gpu", "3b:00.0", "--root", sim.root, "--json"]
    run = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.lstrip().startswith("{"), run.stdout
