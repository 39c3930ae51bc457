"""Carry out the adopt plan: read, plan (pure), write with the digest,
then restart the VM once, drained, when something of ours is pending.
Shared by the dynamic provider and the CLI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from components.vm.adopt import AdoptPlan, AdoptSpec, VmFacts, plan_attach, plan_undo
from components.vm.api import ProxmoxApiError
from components.vm.restart import RestartOptions, RestartResult, restart_drained


class RefusedError(RuntimeError):
    """The plan refused (the message names the config key)."""


@dataclass
class AdoptResult:
    plan: AdoptPlan
    wrote: bool = False
    restarted: bool = False
    pending: list[str] = field(default_factory=list)  # owned keys still pending after the run
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"plan": self.plan.to_json(), "wrote": self.wrote, "restarted": self.restarted,
                "pending": self.pending, "warnings": self.warnings}


class AdoptEngine:
    def __init__(self, connect: Callable[[], Any], spec: AdoptSpec, restart: str, options: RestartOptions):
        self._connect, self.spec, self.restart_mode, self.options = connect, spec, restart, options
        self._api: Any = None
        self.last_facts: VmFacts | None = None

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = self._connect()
        return self._api

    def facts(self) -> VmFacts:
        self.last_facts = self.api.facts(self.spec.node, self.spec.vm_id)
        return self.last_facts

    def plan(self, previous: dict[str, str | None] | None = None) -> AdoptPlan:
        return plan_attach(self.spec, self.facts(), previous)

    def apply(self, previous: dict[str, str | None] | None = None, *, restart: bool = True, also: tuple[str, ...] = ()) -> AdoptResult:
        """``also``: keys this program no longer owns but just restored (a GPU
        removed from gpus[]), whose pending change the restart is for too."""
        plan = self.plan(previous)
        if plan.refused:
            raise RefusedError("; ".join(plan.refusals))
        return self._carry_out(plan, restart=restart, also=also)

    def undo(self, previous: dict[str, str | None], written: dict[str, str], *, restart: bool = True) -> AdoptResult:
        plan = plan_undo(self.spec, self.facts(), previous, written)
        return self._carry_out(plan, restart=restart)

    def _carry_out(self, plan: AdoptPlan, *, restart: bool, also: tuple[str, ...] = ()) -> AdoptResult:
        spec, say = self.spec, self.options.progress
        owned = (*spec.owned, *(key for key in also if key not in spec.owned))
        result = AdoptResult(plan)
        if not plan.is_noop:
            try:
                self.api.write(spec.node, spec.vm_id, plan.params())
            except ProxmoxApiError as error:
                if "checksum mismatch" in str(error):
                    raise RefusedError(f"VM {spec.vm_id}'s config changed between this program's read and its write (someone else "
                                       f"edited it); nothing was written: run again to plan against the new config ({error})") from None
                raise
            result.wrote = True
            say(f"VM {spec.vm_id}: wrote {', '.join(c.key for c in plan.changes)}")
        if self.last_facts is None or not self.last_facts.exists:
            return result
        pending = sorted(self.api.pending(spec.node, spec.vm_id) & set(owned))
        result.pending = pending
        if not pending:
            return result
        if self.api.status(spec.node, spec.vm_id) != "running":
            return result  # a stopped VM takes pending changes at its next start (PVE/API2/Qemu.pm update_vm)
        if not restart or self.restart_mode == "never":
            result.warnings.append(f"VM {spec.vm_id}: {', '.join(pending)} pending until its next cold start (Proxmox applies them only "
                                   f"when it starts the VM: `qm reboot {spec.vm_id}` after draining the node, not a reboot inside the guest)")
            return result
        outcome: RestartResult = restart_drained(self.api, spec.node, spec.vm_id, owned, self.options)
        result.restarted = outcome.restarted
        result.warnings += outcome.warnings
        result.pending = sorted(self.api.pending(spec.node, spec.vm_id) & set(owned))
        return result
