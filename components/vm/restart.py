"""Restart the VM once, drained, so that its pending GPU slots and balloon apply.

Proxmox applies neither to a running VM: ``vmconfig_hotplug_pending`` skips a
new ``hostpciN`` (not hot-pluggable) and turning the balloon device on or off
(qemu-server PVE/QemuServer.pm). They apply when Proxmox starts a new QEMU
process: ``vm_start_nolock`` runs ``vmconfig_apply_pending``. A reboot inside
the guest keeps the QEMU process, so it applies nothing. ``POST status/reboot``
(``vm_reboot``) writes a reboot request and shuts the VM down; its task ends
once the VM has stopped, and qmeventd's ``qm cleanup`` starts it again
(src/PVE/CLI/qm.pm), which applies the pending changes. So: cordon and drain
the node, reboot through Proxmox, wait (bounded) until the VM runs with nothing
of ours pending and the node is Ready, uncordon.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from components.kubectl import KubectlError, cordon_node, drain_node, get_node, uncordon_node
from components.wait import wait_until

T = TypeVar("T")


class RestartError(RuntimeError):
    """The restart could not be done or did not finish; the message says what state things are in."""


@dataclass
class Clock:
    """Injected time: ``now`` (monotonic seconds) and ``sleep``."""

    now: Callable[[], float]
    sleep: Callable[[float], None]

    @classmethod
    def real(cls) -> Clock:
        return cls(time.monotonic, time.sleep)


@dataclass
class RestartOptions:
    node_name: str | None  # the Kubernetes node; None: no drain
    kubeconfig: str | None = None
    drain_timeout: float = 300.0
    timeout: float = 900.0  # reboot task, VM running again, node Ready
    poll: float = 2.0
    clock: Clock = field(default_factory=Clock.real)
    progress: Callable[[str], None] = lambda _message: None


@dataclass
class RestartResult:
    restarted: bool
    drained: bool = False
    warnings: list[str] = field(default_factory=list)


def _ready(node: dict[str, Any] | None) -> bool:
    conditions = ((node or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def restart_drained(api: Any, pve_node: str, vmid: int, owned: tuple[str, ...], opts: RestartOptions) -> RestartResult:
    """Drain, reboot through Proxmox, wait, uncordon. ``owned``: the keys
    whose pending change the restart is for."""
    clock, say = opts.clock, opts.progress
    node, cordoned_by_us, warnings = opts.node_name, False, []
    if node:
        try:
            found = get_node(node, kubeconfig=opts.kubeconfig)
        except KubectlError as error:
            raise RestartError(f"cannot reach the Kubernetes cluster to drain node {node} before restarting VM {vmid}: {error}. "
                               "Nothing was restarted; the change stays pending (vm.restart: never, or --no-restart, to leave it so)") from None
        if found is None:
            say(f"node {node} is not in the cluster: nothing to drain")
            node = None
        else:
            already = bool((found.get("spec") or {}).get("unschedulable"))
            try:
                if not already:
                    cordon_node(node, kubeconfig=opts.kubeconfig)
                    cordoned_by_us = True
                say(f"draining node {node} before restarting VM {vmid}")
                drain_node(node, timeout_seconds=int(opts.drain_timeout), kubeconfig=opts.kubeconfig)
            except KubectlError as error:
                undone = ""
                if cordoned_by_us:
                    try:
                        uncordon_node(node, kubeconfig=opts.kubeconfig)
                        undone = f" {node} was uncordoned again."
                    except KubectlError as again:
                        undone = f" Uncordoning it failed too ({again}): run `kubectl uncordon {node}`."
                raise RestartError(f"draining node {node} failed: {error}. Nothing was restarted; the change stays pending.{undone} "
                                   "Find what blocks the eviction (often a PodDisruptionBudget: `kubectl get pdb -A`), then raise "
                                   "vm.drainTimeoutSeconds or drain it yourself and run again") from None
            if already:
                warnings.append(f"node {node} was already cordoned before this run, so it stays cordoned afterwards")
    deadline = clock.now() + opts.timeout
    say(f"restarting VM {vmid} through Proxmox (status/reboot) so its pending changes apply")
    upid = api.reboot(pve_node, vmid, timeout=int(max(1, opts.timeout // 2)))
    task = _wait(clock, deadline, opts.poll, f"the reboot task of VM {vmid} ({upid})", node,
                 lambda: api.task(pve_node, upid), lambda task: task.get("status") == "stopped")
    if task.get("exitstatus") != "OK":
        raise RestartError(f"Proxmox's reboot task for VM {vmid} failed: {task.get('exitstatus')} ({upid}); "
                           f"node {node or '-'} stays cordoned: look at the task log, start the VM, then `kubectl uncordon`")
    _wait(clock, deadline, opts.poll, f"VM {vmid} to run again with its new slots", node,
          lambda: api.status(pve_node, vmid) == "running" and not (api.pending(pve_node, vmid) & set(owned)), bool)
    say(f"VM {vmid} runs again, nothing of this program pending")
    if node:
        _wait(clock, deadline, opts.poll, f"node {node} to be Ready", node, lambda: _node_or_none(node, opts.kubeconfig), _ready)
        if cordoned_by_us:
            uncordon_node(node, kubeconfig=opts.kubeconfig)
            say(f"node {node} Ready and uncordoned")
    return RestartResult(restarted=True, drained=node is not None, warnings=warnings)


def _node_or_none(node: str, kubeconfig: str | None) -> dict[str, Any] | None:
    try:
        return get_node(node, kubeconfig=kubeconfig)
    except KubectlError:
        return None  # the API server may be away while its node restarts


def _wait(clock: Clock, deadline: float, poll: float, what: str, node: str | None,
          probe: Callable[[], T], done: Callable[[T], bool]) -> T:
    """Ask ``probe`` every ``poll`` seconds until ``done``, at most until ``deadline`` (on ``clock``)."""
    outcome = wait_until(probe, done, timeout=max(0.0, deadline - clock.now()), interval=poll, clock=clock.now, sleep=clock.sleep)
    if not outcome.done:
        left = f"; node {node} stays cordoned until you `kubectl uncordon {node}`" if node else ""
        raise RestartError(f"gave up waiting for {what} (vm.restartTimeoutSeconds){left}")
    return outcome.value
