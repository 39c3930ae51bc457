"""This stack's Kubernetes node around a host reboot: cordon and drain it
before the reboot stops its VM, uncordon it once it is Ready again (bounded,
on the engine's clock). A marker on the host remembers a cordon of ours, so
a run that dies before the uncordon is finished by the next one."""

from __future__ import annotations

from dataclasses import dataclass

from components.hostprep.connections import EngineOptions, HostConnections
from components.hostprep.errors import DrainError, HostPrepError
from components.hostprep.facts import HostFacts
from components.hostprep.inputs import HostPrepInputs
from components.hostprep.plan_model import RebootImpact
from components.hostprep.scripts import marker_script
from components.kubectl import KubectlError, cordon_node, drain_node, get_node, uncordon_node
from components.ssh.errors import TransportError
from components.wait import wait_until


@dataclass
class Drained:
    node: str
    cordoned_by_us: bool


class NodeDrain:
    def __init__(self, connections: HostConnections, inputs: HostPrepInputs):
        self.connections = connections
        self.inputs = inputs
        self.options: EngineOptions = connections.options

    def drain(self, impact: RebootImpact, warnings: list[str]) -> Drained | None:
        """Cordon and drain this stack's node before the reboot stops its VM."""
        node = impact.drain_node
        if not node:
            return None
        opts = self.options
        own = ", ".join(g.label for g in impact.own)
        opts.progress(f"draining Kubernetes node {node} (VM {own}) before the reboot")
        try:
            data = get_node(node, kubeconfig=opts.kubeconfig, timeout=30)
        except KubectlError as error:
            message = f"cannot reach the Kubernetes cluster to drain node {node} before the reboot stops VM {own}: {error}"
            if self.inputs.running_guests == "stop":
                warnings.append(f"{message}; host.runningGuests is stop, so the host was rebooted without draining it")
                opts.progress(warnings[-1])
                return None
            raise DrainError(f"{message}. host.runningGuests is refuse, so the host was not rebooted (its files are written and refreshed). "
                             "Make the cluster reachable (the stack's kubeconfig secret, or --kubeconfig), or re-run with "
                             "host.runningGuests: stop (CLI: --running-guests stop) to reboot without draining.") from None
        if data is None:
            opts.progress(f"node {node} is not in the cluster: nothing to drain")
            return None
        already = bool((data.get("spec") or {}).get("unschedulable"))
        try:
            if not already:
                self.connections.script(marker_script(root=opts.root, node=node, present=True), label=f"remember that {node} is cordoned")
                cordon_node(node, kubeconfig=opts.kubeconfig)
            drain_node(node, timeout_seconds=int(opts.drain_timeout), kubeconfig=opts.kubeconfig)
        except KubectlError as error:
            undone = ""
            if not already:
                try:
                    uncordon_node(node, kubeconfig=opts.kubeconfig)
                    self.connections.script(marker_script(root=opts.root, node=node, present=False), label=f"forget that {node} is cordoned")
                    undone = f" {node} was uncordoned again."
                except (KubectlError, HostPrepError, TransportError) as again:
                    undone = f" Uncordoning it failed too ({again}): run `kubectl uncordon {node}`."
            raise DrainError(
                f"draining Kubernetes node {node} failed: {error}. Nothing was rebooted; the host files are written and refreshed.{undone} "
                "Find what blocks the eviction (often a PodDisruptionBudget: `kubectl get pdb -A`), then raise host.drainTimeoutSeconds "
                f"(CLI --drain-timeout), or drain it yourself (`kubectl drain {node} --ignore-daemonsets --delete-emptydir-data`) and re-run."
            ) from None
        if already:
            warnings.append(f"node {node} was already cordoned before this run, so it stays cordoned afterwards")
        opts.progress(f"node {node} drained")
        return Drained(node, cordoned_by_us=not already)

    def uncordon_when_ready(self, node: str, deadline: float) -> list[str]:
        """Uncordon ``node`` once it is Ready, asking until ``deadline`` (on
        the engine's clock; a deadline already passed asks once)."""
        # Lazy: the node parsers load the cluster planner (a fifth of a no-op
        # CLI run's CPU), and only a run that cordoned a node gets here.
        from components.facts.kubernetes import ParseError, parse_node

        opts = self.options

        def ask() -> tuple[bool, str]:
            try:
                data = get_node(node, kubeconfig=opts.kubeconfig, timeout=30)
                ready = data is not None and parse_node(data).ready
                return ready, "Ready" if ready else ("not in the cluster" if data is None else "not Ready")
            except (KubectlError, ParseError) as error:
                return False, str(error)

        def say(answer: tuple[bool, str], _waited: float, remaining: float) -> None:
            if remaining > 0:
                opts.progress(f"waiting for node {node} to be Ready ({answer[1]})")

        outcome = wait_until(ask, lambda answer: answer[0], timeout=max(0.0, deadline - opts.clock()), interval=opts.poll_initial,
                             max_interval=opts.poll_cap, clock=opts.clock, sleep=opts.sleep, describe=say)
        if not outcome.done:
            return [f"Kubernetes node {node} is not Ready {opts.guest_timeout:.0f} s after the host came back ({outcome.value[1]}), so it "
                    f"stays cordoned; the next run uncordons it once it is Ready (or run `kubectl uncordon {node}`)"]
        try:
            uncordon_node(node, kubeconfig=opts.kubeconfig)
        except KubectlError as error:
            return [f"node {node} is Ready but uncordoning it failed ({error}): run `kubectl uncordon {node}`"]
        self.connections.script(marker_script(root=opts.root, node=node, present=False), label=f"forget that {node} is cordoned")
        opts.progress(f"node {node} is Ready again: uncordoned")
        return []

    def finish_uncordon(self, facts: HostFacts) -> list[str]:
        """An earlier run cordoned this stack's node and did not get to uncordon it."""
        node = self.inputs.node_name
        if not node or node not in facts.cordoned:
            return []
        warnings = self.uncordon_when_ready(node, self.options.clock())
        for warning in warnings:
            self.options.progress(f"warning: {warning}")
        return warnings
