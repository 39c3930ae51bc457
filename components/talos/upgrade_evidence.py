"""What a walk sees of the node besides its version and schematic (thin
transport over talosctl and kubectl, and the messages built from it):

- whether the node rebooted: the kernel's boot ID, a new random UUID at
  every boot, read with ``talosctl read /proc/sys/kernel/random/boot_id``
  (the Read API serves any regular file to an os:admin talosconfig,
  internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go@v1.13.9
  ``Read``; internal/app/machined/pkg/system/services/machined.go role
  table). A node still on the old version that did not reboot never acted on
  the upgrade; one that rebooted fell back to its previous image;
- whether a finished step is really finished: the NVIDIA extensions listed
  and the Kubernetes node Ready, checked again on every run (a step whose
  extension or Ready check failed is not done only because the version and
  schematic match);
- whether the config staged for the last step is the one running after its
  reboot (a lost staged config is reported, not called "upgraded")."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from components.facts.kubernetes import parse_node
from components.facts.talos import parse_extension_names
from components.kubectl import get_node
from components.talos.config_documents import load_documents
from components.talos.talosctl import TalosctlError, extensions_args, run_talosctl

BOOT_ID = "/proc/sys/kernel/random/boot_id"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def boot_id_args(node: str, endpoint: str) -> list[str]:
    return ["read", BOOT_ID, "--nodes", node, "--endpoints", endpoint]


def read_boot_id(node: str, endpoint: str, talosconfig: str) -> str | None:
    """The node's boot ID, or None when it cannot be read (the node is
    rebooting, or the talosconfig is not os:admin)."""
    try:
        text = run_talosctl(boot_id_args(node, endpoint), talosconfig=talosconfig, timeout=60).strip()
    except TalosctlError:
        return None
    return text if _UUID.match(text) else None


def not_on_step(where: str, node: str, step: str, seen: str, boot_before: str | None, boot_after: str | None,
                *, timed_out: bool) -> str:
    """Why the node answers ``seen`` instead of ``step``, from what was seen."""
    talosctl = "`talosctl upgrade` did not answer in time" if timed_out else "`talosctl upgrade` stopped before the node rebooted"
    if boot_before and boot_after and boot_before == boot_after:
        return (f"{where}: {talosctl} and {node} still runs Talos {seen} with the boot ID it had before the upgrade "
                f"({boot_after}): no reboot was seen, so the node did not act on the upgrade request (its image is unchanged). "
                f"Check the network to the node and `talosctl -n {node} dmesg`, then run `pulumi up` again")
    if boot_before and boot_after:
        return (f"{where}: {node} came back on Talos {seen}, not {step}: the new image did not boot and Talos fell back to the "
                f"previous one (the node rebooted: boot ID {boot_before} -> {boot_after}). Check `talosctl -n {node} dmesg` "
                "and the installer image")
    return (f"{where}: {node} runs Talos {seen}, not {step}, and whether it rebooted is not known (its boot ID could not be "
            f"read with `talosctl read {BOOT_ID}`): either it never acted on the upgrade request or the new image did not "
            f"boot and Talos fell back. Check `talosctl -n {node} dmesg` and the installer image, then run `pulumi up` again")


def wanted_extensions(props: dict[str, Any]) -> list[str]:
    return [str(name).rpartition("/")[2] for name in props.get("extensions") or []]


def missing_extensions(props: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(missing, listed): the stack's extensions the node does not list."""
    node, endpoint, talosconfig = str(props["node"]), str(props["endpoint"]), str(props["talosconfig"])
    listed = parse_extension_names(run_talosctl(extensions_args(node, endpoint), talosconfig=talosconfig, timeout=120))
    return [name for name in wanted_extensions(props) if name not in listed], listed


def kubernetes_state(props: dict[str, Any]) -> str | None:
    """"Ready", "NotReady", "not registered" or "not readable (...)" for the
    stack's Kubernetes node; None without a kubeconfig."""
    if not (props.get("kubeconfig") and props.get("nodeName")):
        return None
    try:
        data = get_node(str(props["nodeName"]), kubeconfig=str(props["kubeconfig"]), timeout=30)
        info = None if data is None else parse_node(data)
    except Exception as error:  # noqa: BLE001 - kubectl or the API server may be restarting; reported
        text = str(error).strip()
        return f"not readable ({text.splitlines()[0] if text else type(error).__name__})"
    return "Ready" if info and info.ready else ("not registered" if info is None else "NotReady")


def unfinished(props: dict[str, Any], version: str) -> list[str]:
    """Why the node on ``version`` with the wanted schematic has not finished
    its last step (empty: it has): extensions missing, or its Kubernetes node
    registered but not Ready. Lines start with "upgrade to" (redo the step)
    or "wait for" (no change, wait for Ready), as the walk's pendingSteps."""
    missing, listed = missing_extensions(props)
    if missing:
        return [f"upgrade to {version} again: the node lists no {', '.join(missing)} (it lists: {', '.join(listed) or 'none'})"]
    state = kubernetes_state(props)
    if state == "NotReady":
        return [f"wait for Kubernetes node {props['nodeName']} to be Ready (it is NotReady) before anything after this step"]
    return []


def documents_of(text: str) -> list[Any]:
    return load_documents(text)


def staged_lost(node: str, step: str, staged: Sequence[Any] | None, running_text: str, next_boot_text: str,
                staged_source: str) -> str | None:
    """After the reboot of ``step``: the config staged for it should run,
    and nothing should wait for another boot. A message when not."""
    running = documents_of(running_text)
    if staged is not None and running != list(staged):
        return (f"{node} rebooted into Talos {step} but does not run the machine config staged for it (the staged config was "
                f"lost or replaced before the reboot): the upgrade is done, its config is not. Compare `talosctl -n {node} get "
                "machineconfig v1alpha1 -o yaml` with `python -m components.talos config` and run `pulumi up` again")
    if staged_source != "v1alpha1" and documents_of(next_boot_text) != running:
        return (f"{node} runs Talos {step}, but another machine config waits for its next boot ({staged_source} differs from "
                "v1alpha1): someone staged a config after this program's. Check it and run `pulumi up` again")
    return None
