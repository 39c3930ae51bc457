"""What a run did, and the outputs it leaves: the facts as they are once a
plan's writes succeeded, the GPU's drivers, groups and subsystem ids, what
it restarted.

The run's values keep their Python names (``host_outputs``,
``RunResult.restarts``, the CLI's ``--json``, ``tools/render.py``); the
provider stores them under camelCase keys, as every provider of this program
does (:func:`state_outputs`). Earlier versions stored the Python names:
:data:`OLD_OUTPUT_KEYS` is that table, read through components/renamed_keys.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from components.hostprep.facts import HostFacts
from components.hostprep.plan_model import HostPlan


@dataclass
class RunResult:
    plan: HostPlan
    facts: HostFacts  # the host as last read (after the reboot, if any)
    rebooted: bool
    round_trips: int
    wrote: list[str]
    ran: list[str]
    verified: list[str]
    reboot_wait_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # guests that did not come back, a node left cordoned, ...
    rebound: list[str] = field(default_factory=list)  # functions moved between drivers live ("0000:3b:00.0 nouveau -> vfio-pci")
    restarts: dict[str, Any] = field(default_factory=lambda: no_restarts())

    def outputs(self, gpu_addresses: list[str]) -> dict[str, Any]:
        return host_outputs(self.facts, gpu_addresses) | {"rebooted": self.rebooted, "restarts": self.restarts}


def no_restarts() -> dict[str, Any]:
    """What a run restarted, machine-readable (the ``restarts`` output): host
    reboots, the guests a reboot stopped (this stack's VM apart), what HA did
    with its guests, and whether this stack's node was drained first."""
    return {"host_reboots": 0, "guests_stopped": [], "own_vms_stopped": [], "ha_guests": [], "node": None, "drained_first": None}


def host_outputs(facts: HostFacts, gpu_addresses: list[str]) -> dict[str, Any]:
    """drivers (every function), iommu_groups and subsystem_ids (per GPU)."""
    drivers = {}
    for address in gpu_addresses:
        for fn in facts.slot_functions(address):
            drivers[fn.address] = fn.driver or ""
    groups = {a: facts.functions[a].iommu_group for a in gpu_addresses if a in facts.functions and facts.functions[a].iommu_group is not None}
    subsystems = {a: facts.functions[a].subsystem_id for a in gpu_addresses if a in facts.functions and facts.functions[a].subsystem_id}
    return {"drivers": drivers, "iommu_groups": groups, "subsystem_ids": subsystems}


# Each renamed output as earlier versions stored it (the one-word ones kept their name).
OLD_OUTPUT_KEYS = {"iommuGroups": "iommu_groups", "subsystemIds": "subsystem_ids"}
_STATE_KEYS = {old: new for new, old in OLD_OUTPUT_KEYS.items()}
# The keys of the ``restarts`` output in the state (``node`` and each HA guest's keys are one word).
_RESTARTS_STATE_KEYS = {"host_reboots": "hostReboots", "guests_stopped": "guestsStopped", "own_vms_stopped": "ownVmsStopped",
                        "ha_guests": "haGuests", "drained_first": "drainedFirst"}


def state_outputs(values: Mapping[str, Any]) -> dict[str, Any]:
    """``RunResult.outputs()`` or ``host_outputs()`` under the keys the
    provider stores in the Pulumi state (GPU and function addresses, the
    values of the maps, stay as they are)."""
    out = {_STATE_KEYS.get(key, key): value for key, value in values.items()}
    if isinstance(out.get("restarts"), Mapping):
        out["restarts"] = {_RESTARTS_STATE_KEYS.get(key, key): value for key, value in out["restarts"].items()}
    return out


def written(facts: HostFacts, plan: HostPlan) -> HostFacts:
    """The facts as they are once ``plan``'s writes and commands succeeded
    (the running state is unchanged until a reboot)."""
    if not plan.changes_host:
        return facts
    files = dict(facts.files)
    originals = dict(facts.originals)
    records = dict(facts.written)
    for change in plan.files:
        files[change.path] = change.after
        originals.setdefault(change.path, change.before)
    for path in (*plan.forget_originals, *plan.archive_originals):
        originals.pop(path, None)
    for path, content in plan.records:
        records.pop(path + ".prev", None)
        if content is None:
            records.pop(path, None)
        else:
            records[path] = content
    return dataclasses.replace(facts, files=files, originals=originals, written=records, pending=(), stale_temps=())
