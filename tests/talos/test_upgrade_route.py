"""The upgrade route of a step and who drains the node (pure), from talosctl
v1.13.9's upgrade.go and drain.go and Talos' lifecycle service (see
components.talos.upgrade_route)."""

from __future__ import annotations

import pytest

from components.talos.upgrade_drain import WalkRefused, check_tools, pending_reboot_hint
from components.talos.upgrade_route import RouteRefused, kernel_args_at_risk, plan_route

NODE = "192.168.8.123"


@pytest.mark.parametrize(("version", "install", "kubeconfig", "endpoint_is_node", "path", "drain", "flags"), [
    ("v1.12.11", {}, True, True, "legacy", "node", ()),
    ("v1.11.6", {"extraKernelArgs": ["a=b"]}, False, True, "legacy", "node", ()),
    ("v1.13.4", {}, True, True, "lifecycle", "program", ("--drain=false",)),
    ("v1.13.4", {}, False, False, "lifecycle", "talosctl", ()),
    ("v1.13.4", {"extraKernelArgs": ["pcie_aspm=off"]}, True, False, "legacy", "node", ("--legacy",)),
    ("v1.13.4", {"extraKernelArgs": ["pcie_aspm=off"], "grubUseUKICmdline": True}, False, False, "lifecycle", "talosctl", ()),
])
def test_each_step_is_drained_exactly_once(version, install, kubeconfig, endpoint_is_node, path, drain, flags) -> None:
    route = plan_route(version, running_machine={"install": install}, kubeconfig=kubeconfig, endpoint_is_node=endpoint_is_node, node=NODE)
    assert (route.path, route.drain, route.flags) == (path, drain, flags)
    assert route.path in route.line()


def test_lifecycle_without_a_kubeconfig_and_a_worker_endpoint_is_refused_naming_talos_endpoint() -> None:
    with pytest.raises(RouteRefused, match=r"proxmox-talos-gpu:talos.endpoint is not set.*control-plane"):
        plan_route("v1.13.4", running_machine={}, kubeconfig=False, endpoint_is_node=True, node=NODE)


def test_kernel_args_at_risk_only_without_the_uki_cmdline() -> None:
    assert kernel_args_at_risk({"install": {"extraKernelArgs": ["x"]}}) == ["x"]
    assert kernel_args_at_risk({"install": {"extraKernelArgs": ["x"], "grubUseUKICmdline": False}}) == ["x"]
    assert kernel_args_at_risk({"install": {"extraKernelArgs": ["x"], "grubUseUKICmdline": True}}) == []
    assert kernel_args_at_risk({}) == []


def test_every_tool_a_walk_needs_is_checked_before_the_first_change() -> None:
    props = {"kubeconfig": "k", "nodeName": "moody-good"}
    with pytest.raises(WalkRefused, match="kubectl not found on PATH"):
        check_tools(props, which=lambda tool: None if tool == "kubectl" else f"/usr/bin/{tool}")
    check_tools({}, which=lambda tool: None if tool == "kubectl" else f"/usr/bin/{tool}")


def test_talosctls_failed_drain_says_a_reboot_is_pending() -> None:
    error = RuntimeError("error creating Kubernetes client for drain: error fetching kubeconfig from Talos API: rpc error: "
                         "code = Unimplemented desc = kubeconfig is only available on control plane nodes")
    assert "a reboot is pending" in pending_reboot_hint(error, NODE)
    assert pending_reboot_hint(RuntimeError("connection refused"), NODE) is None
