"""`upgrade-plan` says, for each upgrade step, which path `talosctl upgrade`
takes (legacy or LifecycleService) and who drains the node before its
reboot (components.talos.upgrade_route)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from components.config import parse_stack_config
from components.talos.upgrade_route import RouteRefused
from components.talos.walk_plan import upgrade_plan
from tests.conftest import ROOT
from tests.talos.running_configs import as_text, worker_documents


def plan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "components.talos", "upgrade-plan", "--stack", "homelab", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def routes(*args: str) -> list[tuple[str, str, str]]:
    done = plan(*args, "--json")
    assert done.returncode == 0, done.stderr
    return [(step["version"], step["path"], step["drain"]) for step in json.loads(done.stdout) if step["kind"] == "upgrade"]


def test_steps_from_nodes_before_1_13_take_the_legacy_path_and_the_node_drains_itself() -> None:
    assert routes("--running-version", "v1.11.6") == [("v1.12.11", "legacy", "node"), ("v1.13.9", "legacy", "node")]


def test_a_patch_upgrade_on_1_13_takes_lifecycle_drained_by_this_program_or_by_talosctl() -> None:
    assert routes("--running-version", "v1.13.4") == [("v1.13.9", "lifecycle", "program")]
    assert routes("--running-version", "v1.13.4", "--no-kubeconfig") == [("v1.13.9", "lifecycle", "talosctl")], \
        "the homelab's talos.endpoint is a control plane"
    text = plan("--running-version", "v1.13.4").stdout
    assert "lifecycle path; this program drains it first with the stack's kubeconfig (kubectl drain; talosctl --drain=false)" in text


def test_extra_kernel_args_on_grub_take_the_legacy_path(tmp_path: Path) -> None:
    documents = worker_documents("v1.13.9")
    documents[0]["machine"]["install"]["extraKernelArgs"] = ["pcie_aspm=off"]
    running = tmp_path / "running.yaml"
    running.write_text(as_text(documents))
    assert routes("--running-version", "v1.13.4", "--running", str(running)) == [("v1.13.9", "legacy", "node")]
    done = plan("--running-version", "v1.13.4", "--running", str(tmp_path / "missing.yaml"))
    assert done.returncode == 2 and "--running" in done.stderr and "Traceback" not in done.stderr


def test_a_worker_endpoint_without_a_kubeconfig_is_refused_naming_talos_endpoint(homelab) -> None:
    homelab["talos"].pop("endpoint", None)
    cfg = parse_stack_config(homelab)
    assert cfg.talos.talosctl_endpoint == cfg.talos.node_address
    with pytest.raises(RouteRefused, match="talos.endpoint"):
        upgrade_plan(cfg, "v1.13.4", kubeconfig=False)
    assert [step.drain for step in upgrade_plan(cfg, "v1.13.4") if step.kind == "upgrade"] == ["program"]
