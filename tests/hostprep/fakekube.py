"""A stand-in `kubectl` for the drain around a host reboot, as strict as the
real one for the verbs used (kubectl v1.32 `get node`, `cordon`, `uncordon`,
`drain`; k8s.io/kubectl pkg/drain):

- global flags: `--kubeconfig FILE` / `--kubeconfig=FILE` only; any other
  flag is "error: unknown flag: --x" (exit 1), as kubectl says.
- `drain NODE` cordons, then refuses DaemonSet pods without
  `--ignore-daemonsets`, emptyDir pods without `--delete-emptydir-data` and
  bare pods without `--force`; evicts the rest; a pod whose eviction a
  PodDisruptionBudget blocks keeps being retried until `--timeout` (0s:
  forever), then "global timeout reached" and exit 1.
- a node is Ready while the simulated host runs its VM (``vm``: the guest's
  state on the simulated host), or as set.

State lives in a JSON file ($FAKE_KUBE_STATE); every call is appended to
``calls.jsonl`` beside it, with the mode of the --kubeconfig file.
Run as `python fakekube.py <args>` through the wrapper ``install`` writes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


class Kube:
    """The test's handle on the stand-in: its state and its calls."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.state_file = directory / "state.json"
        self.bin = directory / "bin"

    @classmethod
    def install(cls, directory: Path, *, nodes: dict[str, dict[str, Any]], pods: list[dict[str, Any]] | None = None) -> Kube:
        kube = cls(directory)
        kube.bin.mkdir(parents=True, exist_ok=True)
        kube.save({"nodes": nodes, "pods": pods or []})
        wrapper = kube.bin / "kubectl"
        wrapper.write_text(f"#!/bin/sh\nFAKE_KUBE_STATE={shlex.quote(str(kube.state_file))} exec {shlex.quote(sys.executable)} "
                           f"{shlex.quote(str(HERE / 'fakekube.py'))} \"$@\"\n")
        wrapper.chmod(0o755)
        return kube

    def load(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text())

    def save(self, state: dict[str, Any]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_file)

    def node(self, name: str) -> dict[str, Any]:
        return self.load()["nodes"][name]

    def calls(self) -> list[dict[str, Any]]:
        path = self.dir / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def verbs(self) -> list[list[str]]:
        return [call["args"] for call in self.calls()]


def _duration(text: str) -> float:
    """kubectl's --timeout: Go durations (`30s`, `5m`, `1m30s`, `0s`)."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s|ms)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(text)
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def _ready(node: dict[str, Any]) -> bool:
    vm = node.get("vm")
    if vm:  # Ready while the simulated host runs the node's VM
        sys.path.insert(0, str(REPO))
        from tests.hostprep.simhost import SimHost

        return SimHost(Path(vm["sim"])).guest_status().get(int(vm["vmid"])) == "running"
    return bool(node.get("ready", True))


def _node_json(name: str, node: dict[str, Any]) -> dict[str, Any]:
    spec = {"unschedulable": True} if node.get("unschedulable") else {}
    if node.get("unschedulable"):
        spec["taints"] = [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": spec, "status": {"conditions": [{"type": "Ready", "status": "True" if _ready(node) else "False"}],
                                     "allocatable": {}, "capacity": {}}}


def main(argv: list[str]) -> int:
    state_file = Path(os.environ["FAKE_KUBE_STATE"])
    kube = Kube(state_file.parent)
    args: list[str] = []
    kubeconfig = None
    rest = list(argv)
    while rest:
        word = rest.pop(0)
        if word == "--kubeconfig" and rest:
            kubeconfig = rest.pop(0)
        elif word.startswith("--kubeconfig="):
            kubeconfig = word.split("=", 1)[1]
        else:
            args.append(word)
    record: dict[str, Any] = {"args": args, "kubeconfig": kubeconfig, "mode": None, "time": time.time()}
    if kubeconfig:
        try:
            record["mode"] = oct(stat.S_IMODE(os.stat(kubeconfig).st_mode))
        except OSError:
            with open(kube.dir / "calls.jsonl", "a") as log:
                log.write(json.dumps(record) + "\n")
            print(f'error: stat {kubeconfig}: no such file or directory', file=sys.stderr)
            return 1
    with open(kube.dir / "calls.jsonl", "a") as log:
        log.write(json.dumps(record) + "\n")
    state = kube.load()
    if not args:
        print("kubectl controls the Kubernetes cluster manager.", file=sys.stderr)
        return 1
    verb = args[0]
    allowed = {"get": {"-o", "--output"}, "cordon": set(), "uncordon": set(),
               "drain": {"--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout", "--grace-period"}}
    if verb not in allowed:
        print(f'error: unknown command "{verb}" for "kubectl"', file=sys.stderr)
        return 1
    values: dict[str, str] = {}
    index = 1
    positional: list[str] = []
    while index < len(args):
        word = args[index]
        if word.startswith("-"):
            name, _, value = word.partition("=")
            if name not in allowed[verb]:
                print(f"error: unknown flag: {name}\nSee 'kubectl {verb} --help' for usage.", file=sys.stderr)
                return 1
            if name in ("-o", "--output", "--timeout", "--grace-period") and not value:
                index += 1
                value = args[index] if index < len(args) else ""
            values[name] = value or "true"
        else:
            positional.append(word)
        index += 1
    if verb == "get":
        if positional[:1] not in (["node"], ["nodes"], ["no"]) or len(positional) != 2 or values.get("-o", values.get("--output")) != "json":
            print(f"fake kubectl: only `get node NAME -o json` is modelled, got {args}", file=sys.stderr)
            return 1
        positional = positional[1:]
    if len(positional) != 1:
        print(f"error: exactly one NODE is required for {verb}", file=sys.stderr)
        return 1
    name = positional[0]
    if name not in state["nodes"]:
        print(f'Error from server (NotFound): nodes "{name}" not found', file=sys.stderr)
        return 1
    if verb == "get":
        print(json.dumps(_node_json(name, state["nodes"][name]), indent=4))
        return 0
    node = state["nodes"][name]
    if verb in ("cordon", "uncordon"):
        want = verb == "cordon"
        already = bool(node.get("unschedulable")) == want
        node["unschedulable"] = want
        kube.save(state)
        print(f"node/{name} {'already ' if already else ''}{verb}ed")
        return 0
    # drain
    timeout = 0.0
    if "--timeout" in values:
        try:
            timeout = _duration(values["--timeout"])
        except ValueError:
            print(f'error: invalid argument "{values["--timeout"]}" for "--timeout" flag: time: invalid duration "{values["--timeout"]}"',
                  file=sys.stderr)
            return 1
    print(f"node/{name} {'already ' if node.get('unschedulable') else ''}cordoned")
    node["unschedulable"] = True
    kube.save(state)
    pods = [p for p in state["pods"] if p["node"] == name]
    daemon = [p for p in pods if p.get("owner") == "DaemonSet"]
    errors = []
    if daemon and "--ignore-daemonsets" not in values:
        errors.append("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): "
                      + ", ".join(f"{p['namespace']}/{p['name']}" for p in daemon))
    local = [p for p in pods if p.get("emptydir") and p.get("owner") != "DaemonSet"]
    if local and "--delete-emptydir-data" not in values:
        errors.append("cannot delete Pods with local storage (use --delete-emptydir-data to override): "
                      + ", ".join(f"{p['namespace']}/{p['name']}" for p in local))
    bare = [p for p in pods if not p.get("owner")]
    if bare and "--force" not in values:
        errors.append("cannot delete Pods that declare no controller (use --force to override): "
                      + ", ".join(f"{p['namespace']}/{p['name']}" for p in bare))
    if errors:
        print(f'error: unable to drain node "{name}" due to error: [{", ".join(errors)}], continuing command...\n'
              f"There are pending nodes to be drained:\n {name}", file=sys.stderr)
        return 1
    if daemon:
        print("Warning: ignoring DaemonSet-managed Pods: " + ", ".join(f"{p['namespace']}/{p['name']}" for p in daemon), file=sys.stderr)
    evict = [p for p in pods if p.get("owner") != "DaemonSet"]
    for pod in evict:
        print(f"evicting pod {pod['namespace']}/{pod['name']}")
    blocked = [p for p in evict if p.get("pdb_blocks")]
    started = time.monotonic()
    while blocked:
        for pod in blocked:
            print(f'error when evicting pods/"{pod["name"]}" -n "{pod["namespace"]}" (will retry after 5s): '
                  "Cannot evict pod as it would violate the pod's disruption budget.", file=sys.stderr)
        if timeout and time.monotonic() - started >= timeout:
            reasons = ", ".join(f'error when evicting pods/"{p["name"]}" -n "{p["namespace"]}": global timeout reached: {values["--timeout"]}'
                                for p in blocked)
            print(f'error: unable to drain node "{name}" due to error: [{reasons}], continuing command...\n'
                  f"There are pending nodes to be drained:\n {name}", file=sys.stderr)
            return 1
        time.sleep(min(0.5, timeout or 0.5))
    state = kube.load()
    state["pods"] = [p for p in state["pods"] if p["node"] != name or p.get("owner") == "DaemonSet"]
    state["nodes"][name]["unschedulable"] = True
    kube.save(state)
    for pod in evict:
        print(f"pod/{pod['name']} evicted")
    print(f"node/{name} drained")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
