"""Carry out the route of an upgrade step (components.talos.upgrade_route):
the checks before the walk's first change, this program's own drain before
a LifecycleService upgrade, and the uncordon once the node is Ready again."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from typing import Any

from components.kubectl import KubectlError, cordon_node, drain_node, uncordon_node
from components.talos.config_documents import load_documents, v1alpha1_index
from components.talos.node_config import read_configs
from components.talos.upgrade_route import Route, RouteRefused, plan_route


class WalkRefused(RuntimeError):
    """The walk cannot start: nothing on the node was changed."""


def needed_tools(props: dict[str, Any]) -> list[str]:
    """The tools a walk runs: talosctl always, kubectl for the Ready wait
    and the drain when the stack has a kubeconfig."""
    return ["talosctl", *(["kubectl"] if props.get("kubeconfig") and props.get("nodeName") else [])]


def check_tools(props: dict[str, Any], which: Callable[[str], str | None] = shutil.which, *,
                tools: Sequence[str] | None = None) -> None:
    """Refuse before the first change when a tool the walk needs is missing
    (found only after an upgrade, the Ready wait would retry it until
    upgradeTimeoutSeconds). ``tools``: instead of :func:`needed_tools`."""
    needed = list(tools) if tools is not None else needed_tools(props)
    missing = [tool for tool in needed if which(tool) is None]
    if missing:
        raise WalkRefused(f"{', '.join(missing)} not found on PATH; this run needs {' and '.join(needed)} "
                          "(install them, e.g. https://kubernetes.io/docs/tasks/tools/ and the talosctl release matching the "
                          "node) and run again; nothing was changed")


def machine_of(config_text: str) -> dict[str, Any]:
    documents = load_documents(config_text)
    return documents[v1alpha1_index(documents)].get("machine") or {}


def routes(props: dict[str, Any], running_version: str, steps: Sequence[str], running_config: str,
           next_boot_config: str) -> list[Route]:
    """The route of every step, planned before the first one (a refusal
    changes nothing). The first step runs with the running config, the later
    ones with the config staged for them (the next-boot config's install
    section, which the adoption does not change)."""
    node = str(props["node"])
    kubeconfig = bool(props.get("kubeconfig") and props.get("nodeName"))
    out, version = [], running_version
    for index, step in enumerate(steps):
        machine = machine_of(running_config if index == 0 else next_boot_config)
        try:
            out.append(plan_route(version, running_machine=machine, kubeconfig=kubeconfig,
                                  endpoint_is_node=str(props["endpoint"]) == node, node=node))
        except RouteRefused as error:
            raise WalkRefused(f"{error}; nothing was changed") from None
        version = step
    return out


def check_routes(props: dict[str, Any], running_version: str, steps: Sequence[str]) -> None:
    """The preflight's look at the routes: with the running config (read
    only) and the tools the run has (kubectl: the stack has a kubeconfig),
    refuse a step no route can drain before any config reaches the node."""
    if not steps:
        return
    node, endpoint, talosconfig = str(props["node"]), str(props["endpoint"]), str(props["talosconfig"])
    configs = read_configs(node, endpoint, talosconfig, running_version)
    drainable = "kubectl" in (props.get("tools") or [])
    routes({"node": node, "endpoint": endpoint, "kubeconfig": drainable, "nodeName": drainable}, running_version, steps,
           configs.running, configs.next_boot)


def drain_first(route: Route, props: dict[str, Any], where: str, say: Callable[[str], None]) -> None:
    """This program's drain, when the route says so (one drain per reboot)."""
    if route.drain != "program":
        return
    name, kubeconfig = str(props["nodeName"]), str(props["kubeconfig"])
    timeout = int(props.get("drainTimeoutSeconds") or 300)
    say(f"{where}: draining Kubernetes node {name} before the reboot")
    try:
        cordon_node(name, kubeconfig=kubeconfig)
        drain_node(name, timeout_seconds=timeout, kubeconfig=kubeconfig)
    except KubectlError as error:
        try:
            uncordon_node(name, kubeconfig=kubeconfig)
        except KubectlError:
            pass
        raise WalkRefused(f"{where}: could not drain Kubernetes node {name} ({error}); nothing was upgraded") from None


def uncordon_after(route: Route, props: dict[str, Any], where: str, say: Callable[[str], None]) -> None:
    """Uncordon the node this program drained, once it is Ready again."""
    if route.drain == "program":
        uncordon_node(str(props["nodeName"]), kubeconfig=str(props["kubeconfig"]))
        say(f"{where}: Kubernetes node {props['nodeName']} uncordoned")


def pending_reboot_hint(error: BaseException, node: str) -> str | None:
    """talosctl's own drain failed after LifecycleService wrote the image
    (cmd/talosctl/cmd/talos/upgrade.go: upgrade, then drain, then reboot)."""
    text = str(error)
    if "for drain" not in text:
        return None
    return (f"the new image is written but {node} was not rebooted (talosctl's drain failed): a reboot is pending. Drain the "
            f"node and run `talosctl -n {node} reboot`, or fix the drain and run `pulumi up` again")
