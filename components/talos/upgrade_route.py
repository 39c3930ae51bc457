"""Which way ``talosctl upgrade`` (v1.13) takes a node, and who drains it
before the reboot (pure).

- A node older than Talos 1.13 answers only the legacy
  ``MachineService.Upgrade``; talosctl falls back to it, and the node's own
  upgrade sequence cordons and drains it (cmd/talosctl/cmd/talos/upgrade.go
  ``talosUpgradeAPIVersionRange``; internal/app/machined/pkg/runtime/
  v1alpha1/v1alpha1_sequencer.go ``Upgrade``, phase "drain").
- From 1.13 talosctl uses ``LifecycleService.Upgrade``: it writes the image,
  then drains the node itself (``--drain``, default true) with a kubeconfig it
  fetches from the Talos endpoint, which only a control plane serves
  (cmd/talosctl/cmd/talos/drain.go, internal/app/internal/machinehelper
  ``CheckControlplane``); a drain that fails leaves the image written and the
  node not rebooted. Its installer gets no ``machine.install.extraKernelArgs``
  (internal/app/lifecycle/lifecycle.go), which a GRUB node with
  ``grubUseUKICmdline`` false (the default) then boots without; ``--legacy``
  takes the legacy path, whose installer gets them
  (internal/pkg/install/install.go ``OptionsFromUpgradeRequest``).

Exactly one drain before every upgrade reboot: the node's (legacy), this
program's with the stack's kubeconfig (``--drain=false`` to talosctl), or
talosctl's own through a control-plane ``talos.endpoint``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.config import PROJECT, parse_version

LIFECYCLE_FROM = (1, 13, 0)

DRAINED_BY = {
    "node": "the node drains itself (Talos' legacy upgrade sequence)",
    "program": "this program drains it first with the stack's kubeconfig (kubectl drain; talosctl --drain=false)",
    "talosctl": "talosctl drains it with a kubeconfig from talos.endpoint (a control plane)",
}


class RouteRefused(ValueError):
    """No upgrade route that drains the node once and keeps its config."""


@dataclass(frozen=True)
class Route:
    path: str                 # "legacy" or "lifecycle"
    drain: str                # a key of DRAINED_BY
    flags: tuple[str, ...]    # extra `talosctl upgrade` flags
    why: str

    def line(self) -> str:
        return f"{self.path} path ({self.why}); {DRAINED_BY[self.drain]}"


def kernel_args_at_risk(running_machine: dict[str, Any]) -> list[str]:
    """The node's ``machine.install.extraKernelArgs`` that the lifecycle
    installer would drop (``grubUseUKICmdline`` not true). A systemd-boot
    node takes its command line from the UKI either way."""
    install = running_machine.get("install") if isinstance(running_machine, dict) else None
    if not isinstance(install, dict) or install.get("grubUseUKICmdline") is True:
        return []
    return [str(arg) for arg in install.get("extraKernelArgs") or []]


def plan_route(node_version: str, *, running_machine: dict[str, Any], kubeconfig: bool, endpoint_is_node: bool,
               node: str) -> Route:
    """The route for an upgrade of a node that runs ``node_version``. Raises
    :class:`RouteRefused`."""
    if parse_version(node_version) < LIFECYCLE_FROM:
        return Route("legacy", "node", (), f"Talos {node_version} has no LifecycleService")
    kept = kernel_args_at_risk(running_machine)
    if kept:
        return Route("legacy", "node", ("--legacy",),
                     f"--legacy keeps machine.install.extraKernelArgs {' '.join(kept)}, which LifecycleService drops on a GRUB "
                     "node without machine.install.grubUseUKICmdline: true")
    if kubeconfig:
        return Route("lifecycle", "program", ("--drain=false",), f"Talos {node_version} upgrades through LifecycleService")
    if not endpoint_is_node:
        return Route("lifecycle", "talosctl", (), f"Talos {node_version} upgrades through LifecycleService")
    raise RouteRefused(
        f"{node} runs Talos {node_version}: talosctl upgrades it through LifecycleService and drains it with a kubeconfig "
        f"fetched from the Talos endpoint, but {PROJECT}:talos.endpoint is not set, so the endpoint is {node} itself, a worker "
        "that serves none (the new image would be written and the node not rebooted). Set "
        f"{PROJECT}:talos.endpoint to a control-plane node's address, or give the stack a kubeconfig so that this "
        "program drains the node itself")
