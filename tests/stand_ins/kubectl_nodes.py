"""The kubectl stand-in's nodes file (tests/stand_ins/kubectl.py), for the
drain around a host reboot: ``get node NAME -o json`` (a Node whose Ready
condition follows the simulated host's VM, or ``ready``), ``cordon``,
``uncordon``, ``drain`` (tests/stand_ins/kubectl_drain.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.stand_ins.kubectl_drain import Failed, cordon, drain


def _ready(node: dict[str, Any]) -> bool:
    vm = node.get("vm")
    if vm:  # Ready while the simulated host runs the node's VM
        from tests.stand_ins.proxmox_host import SimHost

        return SimHost(Path(vm["sim"])).guest_status().get(int(vm["vmid"])) == "running"
    return bool(node.get("ready", True))


def node_json(name: str, node: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if node.get("unschedulable"):
        spec = {"unschedulable": True, "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": spec, "status": {"conditions": [{"type": "Ready", "status": "True" if _ready(node) else "False"}],
                                     "allocatable": {}, "capacity": {}}}


def _save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(path)


def serve(path: Path, verb: str, words: list[str], flags: dict[str, object]) -> tuple[str, str]:
    state = json.loads(path.read_text())
    if verb == "get":
        if words[:1] not in (["node"], ["nodes"], ["no"]) or len(words) != 2 or flags.get("output") != "json":
            raise Failed(f"kubectl stand-in: only `get node NAME -o json` is modelled on the nodes file, got {words} {flags}")
        name = words[1]
        if name not in state["nodes"]:
            raise Failed(f'Error from server (NotFound): nodes "{name}" not found')
        return json.dumps(node_json(name, state["nodes"][name]), indent=4) + "\n", ""
    if verb not in ("cordon", "uncordon", "drain"):
        raise Failed(f"kubectl stand-in: `kubectl {verb}` is not modelled on the nodes file")
    if len(words) != 1:
        raise Failed(f"kubectl stand-in: one NODE is modelled for {verb}, got {words}")
    name = words[0]
    node = state["nodes"].get(name)

    def unschedulable(on: bool) -> None:
        node["unschedulable"] = on  # type: ignore[index]
        _save(path, state)

    if verb != "drain":
        return cordon(name, node, verb == "cordon", unschedulable), ""

    def evict(pods: list[dict[str, Any]]) -> None:
        gone = [(p["namespace"], p["name"]) for p in pods]
        state["pods"] = [p for p in state["pods"] if (p["namespace"], p["name"]) not in gone]
        _save(path, state)

    return drain(name, node, flags, [p for p in state["pods"] if p["node"] == name], unschedulable, evict)
