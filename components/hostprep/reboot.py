"""The host's reboot, when a plan needs one: with consent for the guests it
stops and this stack's node drained first, ``reboot``, then wait (bounded,
reconnecting with a capped backoff on the engine's clock) for a new boot,
then for the guests that come back by themselves and for the node."""

from __future__ import annotations

import dataclasses
from typing import Any

from components.hostprep import ha
from components.hostprep.connections import EngineOptions, HostConnections
from components.hostprep.errors import GuestsRunningError, HostTimeoutError, RebootFailedError
from components.hostprep.facts import FactsError, Guest, HostFacts
from components.hostprep.facts_read import read_guests
from components.hostprep.inputs import HostPrepInputs
from components.hostprep.node_drain import Drained, NodeDrain
from components.hostprep.plan import reboot_impact
from components.hostprep.plan_model import RebootImpact
from components.hostprep.results import no_restarts
from components.ssh.errors import HostKeyError, TransportError
from components.wait import wait_until


class HostReboot:
    def __init__(self, connections: HostConnections, inputs: HostPrepInputs):
        self.connections = connections
        self.inputs = inputs
        self.options: EngineOptions = connections.options
        self.node = NodeDrain(connections, inputs)

    def run(self, facts: HostFacts, impact: RebootImpact | None) -> tuple[HostFacts, float, list[str], dict[str, Any]]:
        """With consent for the guests it stops and this stack's node drained:
        reboot, wait for the new boot, the guests and the node."""
        if impact is None or (not impact.guests_known and not facts.guests_problem):
            transport = self.connections.open()
            try:
                guests, problem, node = read_guests(transport, root=self.options.root)
            finally:
                self.connections.release(transport)
            facts = dataclasses.replace(facts, guests=guests, guests_problem=problem, pve_node=node)
            impact = reboot_impact(self.inputs, facts)
        if impact.blocked:
            raise GuestsRunningError(impact.blocked)
        for line in impact.lines(self.inputs.running_guests):
            self.options.progress(line)
        warnings: list[str] = list(impact.notes)
        drained = self.node.drain(impact, warnings)
        started = self.options.clock()
        new_facts = self._reboot_and_wait(facts)
        wait = self.options.clock() - started
        warnings += self._after_boot(impact, drained, new_facts)
        restarts = no_restarts() | {
            "host_reboots": 1,
            "guests_stopped": [g.vmid for g in impact.others],
            "own_vms_stopped": [g.vmid for g in impact.own],
            "ha_guests": [{"vmid": g.vmid, "hastate": g.hastate, "policy": impact.ha_policy, "moved": g in impact.moved}
                          for g in (*impact.stops, *impact.moved) if ha.ha_managed(g)],
            "node": impact.drain_node,
            "drained_first": None if not impact.drain_node else drained is not None,
        }
        return new_facts, wait, warnings, restarts

    def _reboot_and_wait(self, facts: HostFacts) -> HostFacts:
        opts = self.options
        opts.progress("rebooting the host")
        transport = self.connections.open()
        result = None
        try:
            result = transport.run("reboot", timeout=60)
        except TransportError:
            pass  # the connection going down with the host is the expected outcome
        finally:
            self.connections.release(transport)
        said = ""
        if result is not None:
            said = (result.stderr or result.stdout).strip()
            if result.rc not in (0, -1):
                raise RebootFailedError(
                    f"`reboot` failed on the host (exit {result.rc}): {said[:300] or 'no output'}. The host was not rebooted; "
                    "its files are written and refreshed. Reboot it yourself (its console, or the Proxmox GUI), then re-run to verify.")
        return self.wait_for_reboot(facts.boot_id, reboot_output=said)

    def wait_for_reboot(self, old_boot_id: str, *, reboot_output: str = "") -> HostFacts:
        """Reconnect with backoff (capped) until the host runs a new boot, or time out.
        If the old boot still runs and is not shutting down after the grace
        period, the reboot never started: say so at once."""
        opts = self.options
        started = opts.clock()
        last = ["no attempt yet"]

        def attempt() -> HostFacts | None:
            """The host's facts once it runs a new boot; None (and ``last`` says why) before."""
            elapsed = opts.clock() - started
            opts.progress(f"waiting for the host to come back: {elapsed:.1f} s of {opts.reboot_timeout:.0f} s ({last[0]})")
            try:
                transport = self.connections.open(max(0.5, min(opts.connect_timeout, opts.reboot_timeout - elapsed)))
            except HostKeyError:
                raise
            except TransportError as error:
                last[0] = str(error).split(": ", 1)[-1]
                return None
            try:
                facts = self.connections.facts(transport)
            except TransportError as error:
                last[0] = f"connection dropped: {error}"
                return None
            except FactsError as error:  # the shutdown killed the read, or the boot is not far enough yet
                last[0] = f"host not ready: {error}"
                return None
            finally:
                self.connections.release(transport)
            if facts.boot_id and facts.boot_id != old_boot_id:
                return facts
            if facts.system_state == "stopping":
                last[0] = "shutting down"
            elif opts.clock() - started >= opts.reboot_start_grace:
                raise RebootFailedError(
                    f"the reboot never started: {opts.clock() - started:.0f} s after `reboot` the host still runs the same boot "
                    f"(boot id unchanged), sshd still answers and systemd says {facts.system_state or 'nothing'!r}. "
                    f"`reboot` said: {reboot_output[:300] or 'nothing'}. The host files are written and refreshed; reboot the host "
                    "yourself (its console, or the Proxmox GUI), then re-run to verify.")
            else:
                last[0] = "still running the old boot"
            return None

        outcome = wait_until(attempt, lambda facts: facts is not None, timeout=opts.reboot_timeout, interval=opts.poll_initial,
                             max_interval=opts.poll_cap, clock=opts.clock, sleep=opts.sleep)
        if outcome.value is None:
            raise HostTimeoutError(
                f"the host did not come back within {opts.reboot_timeout:.0f} s after the reboot (last: {last[0]}). "
                "Check its console; the changes are on disk and undo works once it is reachable.")
        opts.progress(f"the host is back after {opts.clock() - started:.1f} s")
        return outcome.value

    def _read_guests_now(self) -> tuple[Guest, ...] | None:
        """Every guest of the cluster (HA may have moved one to another node)."""
        try:
            transport = self.connections.open()
        except TransportError:
            return None
        try:
            guests, _, _ = read_guests(transport, root=self.options.root, everywhere=True)
            return guests
        except TransportError:
            return None
        finally:
            self.connections.release(transport)

    def _after_boot(self, impact: RebootImpact, drained: Drained | None, facts: HostFacts) -> list[str]:
        """Wait (bounded) for the guests that ran with onboot=1 and for this
        stack's node to be Ready, then uncordon it; report what did not come back."""
        opts = self.options
        warnings: list[str] = []
        deadline = opts.clock() + opts.guest_timeout
        policy = impact.ha_policy
        # pve-guests starts the onboot ones; HA starts its own (wherever it put them), onboot or not.
        expected = [g for g in (*impact.stops, *impact.moved) if (ha.comes_back(g, policy) if ha.ha_managed(g) else g.onboot)]
        not_back = list(expected)
        if expected:
            def still_stopped() -> list[Guest]:
                nonlocal not_back
                current = self._read_guests_now()
                if current is not None:  # unreadable: the last answer stands
                    running = {g.vmid for g in current if g.running}
                    not_back = [g for g in expected if g.vmid not in running]
                return not_back

            def say(waiting: list[Guest], _waited: float, remaining: float) -> None:
                if remaining > 0:
                    opts.progress(f"waiting for guests to start again (onboot=1, or HA): {', '.join(g.label for g in waiting)}")

            not_back = wait_until(still_stopped, lambda waiting: not waiting, timeout=opts.guest_timeout, interval=opts.poll_initial,
                                  max_interval=opts.poll_cap, clock=opts.clock, sleep=opts.sleep, describe=say).value
        for guest in not_back:
            if ha.ha_managed(guest):
                warnings.append(f"{guest.label} is HA-managed (ha: shutdown_policy={policy}) and HA has not started it again "
                                f"{opts.guest_timeout:.0f} s after the host came back: check `ha-manager status`")
                continue
            warnings.append(f"{guest.label} was running before the reboot and has onboot=1, but is not running {opts.guest_timeout:.0f} s "
                            f"after the host came back: check it (`{guest.tool} status {guest.vmid}`, `{guest.tool} start {guest.vmid}`)")
        for guest in impact.stops:
            if ha.ha_managed(guest):
                if not ha.comes_back(guest, policy):
                    warnings.append(f"{guest.label} is HA-managed with requested state {guest.hastate}: HA keeps it stopped after the reboot")
            elif not guest.onboot:
                warnings.append(f"{guest.label} was running before the reboot and has no onboot, so Proxmox did not start it again: "
                                f"`{guest.tool} start {guest.vmid}`")
        if drained and drained.cordoned_by_us:
            warnings += self.node.uncordon_when_ready(drained.node, deadline)
        for warning in warnings:
            opts.progress(f"warning: {warning}")
        return warnings
