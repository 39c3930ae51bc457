"""``kubectl cordon`` / ``uncordon`` / ``drain`` for the kubectl stand-in
(tests/stand_ins/kubectl.py), over any store of nodes and pods (the
cluster's objects, or the host-reboot tests' nodes file).

Mirrors kubernetes/kubectl pkg/cmd/drain/drain.go and pkg/drain/{drain,
filters,cordon}.go at kubernetes-1.33.0 .. kubernetes-1.35.7:

- cordon/uncordon print ``node/NAME cordoned`` (``already cordoned``, and
  the same for uncordon); a missing node is ``Error from server (NotFound):
  nodes "NAME" not found``;
- drain cordons first, then filters the node's pods: DaemonSet-managed pods
  are fatal without ``--ignore-daemonsets`` (then a warning), pods with an
  emptyDir without ``--delete-emptydir-data``, pods with no controller
  without ``--force``; the fatal ones are one aggregated error (``[a, b]``
  when several), printed as ``error: unable to drain node "N" due to error:
  ..., continuing command...`` and ``There are pending nodes to be
  drained:`` on stderr, then kubectl's own ``error: ...``, exit 1;
- it prints ``evicting pod NS/P`` per pod, ``pod/P evicted`` once gone and
  ``node/N drained``; a pod whose PodDisruptionBudget refuses eviction is
  retried every 5s (``error when evicting pods/"P" -n "NS" (will retry after
  5s): Cannot evict pod as it would violate the pod's disruption budget.``)
  until ``--timeout`` (0: forever), then ``global timeout reached: <Go
  duration>``.

A pod here is {"namespace", "name", "owner": "DaemonSet"/"ReplicaSet"/...
or None, "emptydir": bool, "pdb_blocks": bool}. The retries are counted, not
slept (no test depends on the machine's speed), except with no timeout."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.stand_ins.kubectl_flags import go_duration, seconds

RETRY = 5.0  # pkg/drain/drain.go: EvictErrorRetryDelay default


class Failed(Exception):
    """kubectl exits 1 having printed ``stdout`` and the message on stderr."""

    def __init__(self, message: str, stdout: str = ""):
        super().__init__(message)
        self.stdout = stdout


def _aggregate(errors: list[str]) -> str:
    """k8s.io/apimachinery/pkg/util/errors Aggregate.Error: one error bare, more in brackets."""
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


def cordon(name: str, node: dict[str, Any] | None, want: bool, set_unschedulable: Callable[[bool], None]) -> str:
    if node is None:
        raise Failed(f'Error from server (NotFound): nodes "{name}" not found')
    verb = "cordoned" if want else "uncordoned"
    already = bool(node.get("unschedulable")) == want
    set_unschedulable(want)
    return f"node/{name} {'already ' if already else ''}{verb}\n"


def drain(name: str, node: dict[str, Any] | None, flags: dict[str, object], pods: list[dict[str, Any]],
          set_unschedulable: Callable[[bool], None], evict: Callable[[list[dict[str, Any]]], None]) -> tuple[str, str]:
    """(stdout, stderr) of a drain that succeeded; Failed otherwise."""
    out = cordon(name, node, True, set_unschedulable)
    err = ""
    label = lambda group: ", ".join(f"{p['namespace']}/{p['name']}" for p in group)  # noqa: E731
    daemon = [p for p in pods if p.get("owner") == "DaemonSet"]
    local = [p for p in pods if p.get("emptydir") and p.get("owner") != "DaemonSet"]
    bare = [p for p in pods if not p.get("owner")]
    fatal, warnings = [], []
    for group, flag, fatal_text, warning_text in (
            (daemon, "ignore-daemonsets", "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)",
             "ignoring DaemonSet-managed Pods"),
            (local, "delete-emptydir-data", "cannot delete Pods with local storage (use --delete-emptydir-data to override)",
             "deleting Pods with local storage"),
            # filters.go: unmanagedFatal already starts with "cannot delete", and errors() adds another.
            (bare, "force", "cannot delete cannot delete Pods that declare no controller (use --force to override)",
             "deleting Pods that declare no controller")):
        if group and not flags.get(flag):
            fatal.append(f"{fatal_text}: {label(group)}")
        elif group:
            warnings.append(f"{warning_text}: {label(group)}")
    if fatal:
        reason = _aggregate(fatal)
        raise Failed(f'error: unable to drain node "{name}" due to error: {reason}, continuing command...\n'
                     f"There are pending nodes to be drained:\n {name}\nerror: {reason}", out)
    if warnings:
        err += "Warning: " + "; ".join(warnings) + "\n"
    evicted = [p for p in pods if p.get("owner") != "DaemonSet"]
    for pod in evicted:
        out += f"evicting pod {pod['namespace']}/{pod['name']}\n"
    blocked = [p for p in evicted if p.get("pdb_blocks")]
    timeout = str(flags.get("timeout") or "0s")
    if blocked:
        limit, waited = seconds(timeout), 0.0
        while not limit or waited < limit:
            for pod in blocked:
                err += (f'error when evicting pods/"{pod["name"]}" -n "{pod["namespace"]}" (will retry after 5s): '
                        "Cannot evict pod as it would violate the pod's disruption budget.\n")
            waited += RETRY
            if not limit:
                time.sleep(RETRY)  # forever, as kubectl: the caller's own timeout ends it
        reason = _aggregate([f'error when evicting pods/"{p["name"]}" -n "{p["namespace"]}": global timeout reached: {go_duration(timeout)}'
                             for p in blocked])
        raise Failed(f'{err}error: unable to drain node "{name}" due to error: {reason}, continuing command...\n'
                     f"There are pending nodes to be drained:\n {name}\nerror: {reason}", out)
    evict(evicted)
    for pod in evicted:
        out += f"pod/{pod['name']} evicted\n"
    return out + f"node/{name} drained\n", err
