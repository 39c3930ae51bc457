"""The bounded waits of an upgrade step, through the one bounded wait
(:func:`components.wait.wait_until`, clock and sleep injected): until the
node's Talos API answers, until it answers with the step's version, schematic
and extensions, and until its Kubernetes node is Ready. Each poll that is not
the answer says what it saw (a progress line); the bound ends in
:class:`StepFailed` naming the step and what to check."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

from components.talos.node_state import read_node_facts
from components.talos.talosctl import TalosctlError
from components.talos.upgrade import NodeFacts
from components.talos.upgrade_evidence import kubernetes_state, missing_extensions, not_on_step, read_boot_id, wanted_extensions
from components.wait import wait_until

Say = Callable[[str], None]
Clock = Callable[[], float]
Sleep = Callable[[float], None]


class StepFailed(RuntimeError):
    """A version step did not end with the node on the new version, its
    extensions listed and Ready; the message says which step and what to check."""


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def timeout_of(props: dict[str, Any]) -> float:
    return float(props.get("timeoutSeconds") or 1800)


def poll_of(props: dict[str, Any]) -> float:
    return float(props.get("pollSeconds") or 10)


def answer(props: dict[str, Any], where: str, say: Say, *, clock: Clock, sleep: Sleep) -> NodeFacts:
    """The node's facts, once its Talos API answers (bounded, with a
    progress line for each poll)."""
    node, endpoint, talosconfig = str(props["node"]), str(props["endpoint"]), str(props["talosconfig"])
    timeout = timeout_of(props)

    def probe() -> NodeFacts | Exception:
        try:
            return read_node_facts(node, endpoint, talosconfig)
        except (TalosctlError, ValueError) as error:
            # ValueError: output without the node's answer (`talosctl
            # version` with no Server section while machined starts).
            if shutil.which("talosctl") is None:
                raise  # the clear "not installed" error
            return error

    def progress(error: NodeFacts | Exception, _waited: float, remaining: float) -> None:
        if remaining > 0:
            say(f"{where}: waiting for {node}'s Talos API ({first_line(error)})")

    outcome = wait_until(probe, lambda seen: isinstance(seen, NodeFacts), timeout=timeout, interval=poll_of(props),
                         clock=clock, sleep=sleep, describe=progress)
    if not outcome.done:
        raise StepFailed(
            f"{where}: {node} did not answer within {timeout:g} s ({first_line(outcome.value)}). Check the VM's console "
            f"in Proxmox and `talosctl -n {node} dmesg`; the next `pulumi up` continues from where the node is")
    return outcome.value


def arrive(props: dict[str, Any], step: str, where: str, say: Say, *, timed_out: bool, boot_before: str | None,
           clock: Clock, sleep: Sleep) -> NodeFacts:
    """Bounded wait until the node answers with ``step``, lists the
    extensions and (with a kubeconfig) is Ready."""
    node, endpoint, talosconfig = str(props["node"]), str(props["endpoint"]), str(props["talosconfig"])
    deadline = clock() + timeout_of(props)
    facts = answer(props, where, say, clock=clock, sleep=sleep)
    if facts.version != step:
        raise StepFailed(not_on_step(where, node, step, facts.version, boot_before, read_boot_id(node, endpoint, talosconfig),
                                     timed_out=timed_out))
    if facts.schematic != props["schematicId"]:
        raise StepFailed(f"{where}: {node} runs Talos {step} from schematic {facts.schematic}, not {props['schematicId']}")
    say(f"{where}: {node} answers with Talos {facts.version}")
    wanted = wanted_extensions(props)
    missing, listed = missing_extensions(props)
    if missing:
        raise StepFailed(
            f"{where}: {node} came back on {step} without the extensions {', '.join(missing)} (it lists: "
            f"{', '.join(listed) or 'none'}). Check `talosctl -n {node} get extensions` and the schematic "
            f"{props['schematicId']} at https://factory.talos.dev for Talos {step}")
    say(f"{where}: {node} lists the extensions {', '.join(wanted)}")
    ready(props, where, say, deadline, clock=clock, sleep=sleep)
    return facts


def ready(props: dict[str, Any], where: str, say: Say, deadline: float, *, clock: Clock, sleep: Sleep) -> None:
    """Bounded wait, until ``deadline`` on ``clock``, until the stack's
    Kubernetes node is Ready (nothing to wait for without a kubeconfig)."""
    if not (props.get("kubeconfig") and props.get("nodeName")):
        return
    node, name = str(props["node"]), str(props["nodeName"])

    def progress(state: str | None, _waited: float, remaining: float) -> None:
        if remaining > 0:
            say(f"{where}: waiting for Kubernetes node {name} ({state})")

    outcome = wait_until(lambda: kubernetes_state(props), lambda state: state == "Ready", timeout=max(0.0, deadline - clock()),
                         interval=poll_of(props), clock=clock, sleep=sleep, describe=progress)
    if not outcome.done:
        raise StepFailed(f"{where}: Kubernetes node {name} is {outcome.value} after {timeout_of(props):g} s; check "
                         f"`kubectl describe node {name}` and `talosctl -n {node} service kubelet`")
    say(f"{where}: Kubernetes node {name} is Ready")
