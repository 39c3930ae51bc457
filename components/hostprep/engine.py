"""Carries a host plan out: connect, read facts, plan, write atomically,
refresh, reboot when needed (only with consent for the guests it stops,
after draining this stack's Kubernetes node), wait, verify.

Decides nothing itself. Clock, sleep, temp-name tokens and the connection
factory are parameters (:class:`EngineOptions`), so tests and the benchmark
can drive it. The rooms it wires: the host scripts (``scripts``), the steps
of a plan (``steps``), the reboot and its waits (``reboot``, ``node_drain``),
what a run did (``results``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from components.hostprep.connections import Connector, EngineOptions, HostConnections
from components.hostprep.errors import HostPrepError, RebootRequiredError, RefusedError, VerifyError
from components.hostprep.facts import HostFacts
from components.hostprep.inputs import HostPrepInputs
from components.hostprep.plan import plan_host
from components.hostprep.plan_model import HostPlan
from components.hostprep.reboot import HostReboot
from components.hostprep.results import RunResult, no_restarts, written
from components.hostprep.steps import PlanSteps
from components.hostprep.undo import plan_undo
from components.hostprep.verify import VerifyReport, verify_host

_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # a Kubernetes node name (DNS subdomain)


class HostPrepEngine:
    """Facts -> plan -> changes for one host and one owner (project/stack)."""

    def __init__(self, connect: Connector, inputs: HostPrepInputs, owner: str, options: EngineOptions | None = None):
        self.inputs = inputs
        self.owner = owner
        self.options = options or EngineOptions()
        self._rebound: list[str] = []
        self.addresses = [gpu.address for gpu in inputs.gpus]
        if inputs.node_name and not _NODE_NAME.match(inputs.node_name):
            raise HostPrepError(f"{inputs.node_name!r} is not a Kubernetes node name (lowercase letters, digits, '-' and '.')")
        self.connections = HostConnections(connect, self.options, self.addresses)
        self.reboot = HostReboot(self.connections, inputs)

    @property
    def round_trips(self) -> int:
        return self.connections.round_trips

    # -- read-only ---------------------------------------------------------

    def facts(self, *, guests: str = "always") -> HostFacts:
        transport = self.connections.open()
        try:
            return self.connections.facts(transport, guests)
        finally:
            self.connections.release(transport)

    def plan(self, *, guests: str = "auto") -> tuple[HostFacts, HostPlan]:
        facts = self.facts(guests=guests)
        return facts, plan_host(self.inputs, facts, self.owner)

    def plan_undo(self) -> tuple[HostFacts, HostPlan]:
        facts = self.facts(guests="never")
        return facts, self._undo_plan(facts)

    def verify(self, *, guests: str = "never") -> tuple[HostFacts, VerifyReport]:
        facts = self.facts(guests=guests)
        return facts, verify_host(self.inputs, facts, self.owner)

    # -- changing ------------------------------------------------------------

    def apply(self) -> RunResult:
        """Make the host ready; a converged host costs one round trip."""
        def decide(facts: HostFacts) -> HostPlan:
            plan = plan_host(self.inputs, facts, self.owner)
            if plan.refused:
                raise RefusedError("refusing to prepare the host; nothing was written:\n" + "\n".join(f"  - {r}" for r in plan.refusals))
            return plan

        plan, facts, wrote, ran = self._carry_out(decide, guests="auto")
        rebooted, wait, warnings, restarts = False, 0.0, [], no_restarts()
        if plan.reboot:
            if not self.inputs.allow_reboot:
                raise RebootRequiredError(
                    f"the host needs a reboot ({plan.reboot_reason}) and host.allowReboot is false; "
                    "the files are in place: reboot the host when convenient, then run again to verify")
            facts, wait, warnings, restarts = self.reboot.run(facts, plan.impact)
            rebooted = True
        else:
            warnings = self.reboot.node.finish_uncordon(facts)
        report = verify_host(self.inputs, facts, self.owner, booted=rebooted)
        if not report.ok:
            raise VerifyError("the host is not ready for passthrough:\n" + "\n".join(f"  - {p}" for p in report.problems))
        return RunResult(plan, facts, rebooted, self.round_trips, wrote, ran, list(report.checks), wait, warnings,
                         self._rebound, restarts)

    def undo(self) -> RunResult:
        """Take this owner's changes back (restoring originals when it is the last)."""
        def decide(facts: HostFacts) -> HostPlan:
            plan = self._undo_plan(facts)
            if plan.refused:
                raise RefusedError("refusing to undo; nothing was changed:\n" + "\n".join(f"  - {r}" for r in plan.refusals))
            return plan

        plan, facts, wrote, ran = self._carry_out(decide, guests="never")
        rebooted, wait, warnings, restarts = False, 0.0, [], no_restarts()
        if plan.reboot:
            facts, wait, warnings, restarts = self.reboot.run(facts, plan.impact)
            rebooted = True
        return RunResult(plan, facts, rebooted, self.round_trips, wrote, ran, [], wait, warnings, self._rebound, restarts)

    def _undo_plan(self, facts: HostFacts) -> HostPlan:
        return plan_undo(facts, self.owner, allow_reboot=self.inputs.allow_reboot, reboot_on_destroy=self.inputs.reboot_on_destroy,
                         hand_edits_policy=self.inputs.hand_edits, inputs=self.inputs)

    def _carry_out(self, decide: Callable[[HostFacts], HostPlan], *, guests: str) -> tuple[HostPlan, HostFacts, list[str], list[str]]:
        """One connection: read the facts, decide (pure), write and run what
        the plan says. Returns the plan and the facts as they now are."""
        transport = self.connections.open()
        try:
            facts = self.connections.facts(transport, guests)
            plan = decide(facts)
            steps = PlanSteps(self.options)
            try:
                wrote, ran = steps.execute(transport, plan, facts)
            finally:
                self._rebound = steps.rebound
            if self._rebound:  # the running state changed: read it back rather than assume it
                return plan, self.connections.facts(transport), wrote, ran
        finally:
            self.connections.release(transport)
        return plan, written(facts, plan), wrote, ran
