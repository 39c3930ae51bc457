"""A command-line tool imports only what its verb uses: ``--help`` and the
offline verbs run without loading the Pulumi SDK (``pulumi``, and
``pulumi_kubernetes`` with it), whose modules and gRPC protos cost more CPU
than most verbs' own work. Each case runs the tool as a user does (``python
-m``), in a child process that reports, at exit, which SDK modules were
loaded. The verbs that need the SDK (render draws the graph under the mock
engine) and those that load it for now (and why) are listed; a listed case
that stops loading it fails until it is taken off the list.

The host-prep verbs that connect (facts, plan over SSH) are checked against the
simulated host in tests/hostprep/test_cli_imports.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import HOMELAB_STACK, ROOT
from tests.talos.running_configs import as_text, multi_document

# Runs argv[1] as `python -m argv[1]` does; at exit prints the SDK modules
# loaded on the way, one line, after a marker.
WRAPPER = """
import atexit, os, runpy, sys
def _report():
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pulumi", "pulumi_kubernetes"))
    sys.stderr.write("\\nSDK-LOADED: " + " ".join(loaded[:3]) + "\\n")
    sys.stderr.flush()
atexit.register(_report)
module = sys.argv[1]
sys.argv = [module, *sys.argv[2:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""

STACK = ["--stack", str(HOMELAB_STACK)]

CASES: dict[str, list[str]] = {
    "gpunode --help": ["tools.gpunode", "--help"],
    "gpunode stacks --help": ["tools.gpunode", "stacks", "--help"],
    "gpunode hostprep --help": ["tools.gpunode", "hostprep", "--help"],
    "gpunode vm --help": ["tools.gpunode", "vm", "--help"],
    "gpunode talos --help": ["tools.gpunode", "talos", "--help"],
    "gpunode render --help": ["tools.gpunode", "render", "--help"],
    "stacks --help": ["tools.stacks", "--help"],
    "stacks check": ["tools.stacks", "check"],
    "stacks which": ["tools.stacks", "which", *STACK],
    "components.stacks which": ["components.stacks", "which", *STACK],
    "hostprep --help": ["tools.hostprep", "--help"],
    "hostprep plan --offline": ["tools.hostprep", "plan", *STACK, "--offline"],
    "hostprep facts --cpu-vendor amd": ["tools.hostprep", "facts", *STACK, "--cpu-vendor", "amd", "--json"],
    "components.hostprep plan --offline": ["components.hostprep", "plan", *STACK, "--offline"],
    "vm --help": ["tools.vm", "--help"],
    "components.vm --help": ["components.vm", "--help"],
    "talos --help": ["tools.talos", "--help"],
    "talos schematic-id": ["tools.talos", "schematic-id", "{schematic}"],
    "talos schematic": ["tools.talos", "schematic", *STACK],
    "talos patch": ["tools.talos", "patch", *STACK],
    "talos config --diff": ["tools.talos", "config", *STACK, "--running", "{running}", "--diff"],
    "talos upgrade-plan": ["tools.talos", "upgrade-plan", *STACK, "--running-version", "v1.13.9"],
    "render --help": ["tools.render", "--help"],
    "render": ["tools.render", *STACK, "--out", "{out}"],
    "components.render": ["components.render", *STACK, "--out", "{out}"],
}

# Cases that load the SDK, and why. "needs": the verb uses it.
LOADS_THE_SDK: dict[str, str] = {
    "render": "needs: graph.mmd is drawn from the program run under the mock engine (tools/mockengine.py)",
    "components.render": "needs: the same verb",
}


def sdk_modules(argv: list[str], tmp_path) -> tuple[int, str, str]:
    schematic = tmp_path / "schematic.yaml"
    schematic.write_text("customization:\n  systemExtensions:\n    officialExtensions:\n      - siderolabs/nvidia-open-gpu-kernel-modules-lts\n")
    running = tmp_path / "running.yaml"
    running.write_text(as_text(multi_document("v1.13.9")))
    argv = [arg.format(schematic=schematic, running=running, out=tmp_path / "out") for arg in argv]
    done = subprocess.run([sys.executable, "-c", WRAPPER, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "SDK-LOADED:" in done.stderr, done.stderr
    errors, _, loaded = done.stderr.rpartition("SDK-LOADED:")
    return done.returncode, errors, loaded.strip()


def test_every_listed_case_is_a_case():
    assert set(LOADS_THE_SDK) <= set(CASES), set(LOADS_THE_SDK) - set(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_a_verb_loads_the_pulumi_sdk_only_when_listed(name, tmp_path):
    code, errors, loaded = sdk_modules(CASES[name], tmp_path)
    assert code == 0, f"{name}: exit {code}: {errors.strip()[-500:]}"
    if name in LOADS_THE_SDK:
        assert loaded, f"{name} no longer loads the Pulumi SDK: take it off LOADS_THE_SDK ({LOADS_THE_SDK[name]})"
    else:
        assert not loaded, f"{name} loads the Pulumi SDK ({loaded}); a CLI imports only what its verb uses"
