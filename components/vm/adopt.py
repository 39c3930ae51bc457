"""``vm.source: existing``: the pure planner that adopts a VM someone else made.

It owns only the ``hostpciN`` slots of ``gpus[]`` and ``balloon: 0``
(passthrough pins all guest memory); every other key of the VM's config
stays as it is. Facts in (the VM's config as Proxmox serves it, with its
digest and pending keys, the other VMs' hostpci slots, the PCI mappings),
a plan out: the keys to set or delete, each with its reason, or the
refusals that name the config key to change. No I/O here; the transport
(components/vm/api.py) carries the plan out with the digest, so a change
someone else made between the read and the write is refused by Proxmox
("checksum mismatch", qemu-server PVE/API2/Qemu.pm ``update_vm``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from components.pci import pci_device
from components.vm.inputs import canonical_spec

if TYPE_CHECKING:
    from components.config import StackConfig

BALLOON = "balloon"
_HOSTPCI = re.compile(r"^hostpci\d+$")


def parse_hostpci(value: str) -> dict[str, str]:
    """A ``pve-qm-hostpci`` property string as a dict; the first bare item is
    ``host`` (its default key, qemu-server PVE/QemuServer/PCI.pm ``hostpcidesc``)."""
    parts: dict[str, str] = {}
    for item in value.split(","):
        if not item:
            continue
        key, sep, val = item.partition("=")
        if sep:
            parts[key.strip()] = val.strip()
        else:
            parts["host"] = key.strip()
    return parts


def _full(address: str) -> str:
    """``3b:00.0`` and ``0000:3b:00.0`` alike (Proxmox accepts both)."""
    return address if address.count(":") == 2 else f"0000:{address}"


def _overlap(a: str, b: str) -> bool:
    """Two host paths name the same device: same bus/device and the same
    function, or one of them is the whole device (no function)."""
    a, b = _full(a).lower(), _full(b).lower()
    if pci_device(a if "." in a else a + ".0") != pci_device(b if "." in b else b + ".0"):
        return False
    return "." not in a or "." not in b or a == b


def _paths(parts: dict[str, str], mappings: dict[str, tuple[str, ...]] | None) -> tuple[str, ...]:
    """The host paths a slot's value passes through (mapping names resolved
    through the cluster's PCI mappings where they are known)."""
    if "host" in parts:
        return tuple(p for p in parts["host"].split(";") if p)
    if "mapping" in parts and mappings is not None:
        return mappings.get(parts["mapping"], ())
    return ()


@dataclass(frozen=True)
class SlotSpec:
    """One GPU's slot: where, the value to write, and how to name it in messages."""

    index: int  # gpus[index]
    slot: str
    mapping: str | None  # the PCI mapping's name, or None for a raw id
    path: str  # the host path (the mapping's path, or the raw id)
    pcie: bool
    rombar: bool
    xvga: bool

    @property
    def value(self) -> str:
        """What ``qm set --hostpciN`` would take: ``mapping=NAME`` or the raw
        address, then the flags that differ from Proxmox's defaults (rombar 1, x-vga 0, pcie 0)."""
        head = f"mapping={self.mapping}" if self.mapping else self.path
        flags = ["pcie=1"] if self.pcie else []
        flags += [] if self.rombar else ["rombar=0"]
        flags += ["x-vga=1"] if self.xvga else []
        return ",".join([head, *flags])

    def same_device(self, parts: dict[str, str], mappings: dict[str, tuple[str, ...]] | None) -> bool:
        if self.mapping and parts.get("mapping") == self.mapping:
            return True
        return any(_overlap(self.path, other) for other in _paths(parts, mappings))


@dataclass(frozen=True)
class AdoptSpec:
    node: str
    vm_id: int
    name: str
    slots: tuple[SlotSpec, ...]
    check_mappings: bool = True  # the CLI checks that the mappings exist; under Pulumi they are created first

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "vmId": self.vm_id, "name": self.name, "checkMappings": self.check_mappings,
                "slots": [{"index": s.index, "slot": s.slot, "mapping": s.mapping, "path": s.path, "pcie": s.pcie,
                           "rombar": s.rombar, "xvga": s.xvga} for s in self.slots]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AdoptSpec:
        """The spec from the inputs or the state, in either key style (components/vm/inputs.py)."""
        data = canonical_spec(raw)
        return cls(node=data["node"], vm_id=int(data["vmId"]), name=data["name"], check_mappings=bool(data["checkMappings"]),
                   slots=tuple(SlotSpec(index=int(s["index"]), slot=s["slot"], mapping=s.get("mapping"), path=s["path"],
                                        pcie=bool(s["pcie"]), rombar=bool(s["rombar"]), xvga=bool(s["xvga"])) for s in data["slots"]))

    @property
    def owned(self) -> tuple[str, ...]:
        return (*(s.slot for s in self.slots), BALLOON)


def spec_from_config(cfg: StackConfig, *, check_mappings: bool = True) -> AdoptSpec:
    return AdoptSpec(
        node=cfg.proxmox.node, vm_id=cfg.vm.vm_id, name=cfg.vm.name, check_mappings=check_mappings,
        slots=tuple(SlotSpec(index=i, slot=cfg.slot(i), mapping=cfg.mapping_name(i) if gpu.passthrough == "mapping" else None,
                             path=gpu.device_path, pcie=gpu.pcie, rombar=gpu.rombar, xvga=gpu.xvga)
                    for i, gpu in enumerate(cfg.gpus)),
    )


def owned_keys(cfg: StackConfig) -> dict[str, Any]:
    """What ``existing`` mode writes to the VM, for `render`: the owned keys and their values."""
    spec = spec_from_config(cfg)
    return {"source": "existing", "node": spec.node, "vm_id": spec.vm_id,
            "owned_keys": {**{s.slot: s.value for s in spec.slots}, BALLOON: "0"}}


@dataclass(frozen=True)
class VmFacts:
    """What Proxmox says about the VM (``GET .../config``: pending values applied)."""

    exists: bool
    config: dict[str, str] = field(default_factory=dict)
    digest: str = ""
    pending: frozenset[str] = frozenset()  # keys with a pending change or pending delete (GET .../pending)
    status: str = "stopped"  # status/current: running, stopped, ...
    others: dict[int, dict[str, str]] = field(default_factory=dict)  # other VMs: vmid -> their hostpciN values
    mappings: dict[str, tuple[str, ...]] | None = None  # PCI mapping name -> host paths on this node; None: not read


@dataclass(frozen=True)
class Change:
    key: str
    old: str | None
    new: str | None  # None: delete the key
    reason: str

    def line(self) -> str:
        lines = [f"  {self.key}: {self.reason}"]
        lines += [f"-   {self.key}: {self.old}"] if self.old is not None else []
        lines += [f"+   {self.key}: {self.new}"] if self.new is not None else []
        return "\n".join(lines)


@dataclass(frozen=True)
class AdoptPlan:
    vm_id: int
    digest: str
    changes: tuple[Change, ...] = ()
    refusals: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    previous: dict[str, str | None] = field(default_factory=dict)  # what the owned keys held before this program (kept in state)
    written: dict[str, str] = field(default_factory=dict)  # what this program wants the owned keys to hold

    @property
    def refused(self) -> bool:
        return bool(self.refusals)

    @property
    def is_noop(self) -> bool:
        return not self.changes

    def params(self) -> dict[str, str]:
        """The body of ``PUT /nodes/{node}/qemu/{vmid}/config``: values, ``delete``, and the digest read."""
        body = {c.key: c.new for c in self.changes if c.new is not None}
        deletes = [c.key for c in self.changes if c.new is None]
        if deletes:
            body["delete"] = ",".join(deletes)
        body["digest"] = self.digest
        return body

    def render(self) -> str:
        if self.refused:
            return "\n".join(f"refused: {r}" for r in self.refusals)
        head = [f"VM {self.vm_id}: {len(self.changes)} key(s) to change (owned keys only)"]
        return "\n".join(head + [c.line() for c in self.changes] + [f"  nothing to do: {n}" for n in self.notes])

    def to_json(self) -> dict[str, Any]:
        return {"vm_id": self.vm_id, "digest": self.digest, "refusals": list(self.refusals), "notes": list(self.notes),
                "changes": [{"key": c.key, "old": c.old, "new": c.new, "reason": c.reason} for c in self.changes],
                "previous": self.previous, "written": self.written}


def _missing(spec: AdoptSpec) -> str:
    return (f"vm.vmId = {spec.vm_id}: there is no VM {spec.vm_id} on Proxmox node {spec.node}; to have this program create it, "
            "set vm.source: create (with vm.disks[] and vm.networks[]), or correct vm.vmId / proxmox.node")


def _is_q35(machine: str | None) -> bool:
    """``machine`` is ``[type=]<type>[,viommu=...]``; unset means i440fx (qemu-server PVE/QemuServer/Machine.pm)."""
    if not machine:
        return False
    kind = parse_hostpci(machine).get("type") or parse_hostpci(machine).get("host", "")
    return "q35" in kind


def _slot_refusals(spec: AdoptSpec, facts: VmFacts) -> list[str]:
    refusals = []
    ours = {s.slot for s in spec.slots}
    for s in spec.slots:
        key = f"gpus[{s.index}]"
        current = facts.config.get(s.slot)
        if current is not None and not s.same_device(parse_hostpci(current), facts.mappings):
            free = [f"hostpci{i}" for i in range(16) if f"hostpci{i}" not in facts.config and f"hostpci{i}" not in ours][:3]
            refusals.append(f"{key}.slot = {s.slot!r}: VM {spec.vm_id}'s {s.slot} holds another device ({current}); this program "
                            f"never replaces it. Choose a free slot with {key}.slot (free: {', '.join(free) or 'none'})")
        for other_slot, value in sorted(facts.config.items()):
            if _HOSTPCI.match(other_slot) and other_slot not in ours and s.same_device(parse_hostpci(value), facts.mappings):
                refusals.append(f"{key}.slot = {s.slot!r}: VM {spec.vm_id} has this GPU in {other_slot} already ({value}); "
                                f"set {key}.slot: {other_slot} to adopt that slot")
        for vmid, slots in sorted(facts.others.items()):
            for other_slot, value in sorted(slots.items()):
                if s.same_device(parse_hostpci(value), facts.mappings):
                    what = f"{key}.mappingName = {s.mapping!r}" if s.mapping and parse_hostpci(value).get("mapping") == s.mapping \
                        else f"{key}.address = {s.path!r}"
                    refusals.append(f"{what}: the GPU is already configured on VM {vmid} ({other_slot}: {value}); a device passes through to "
                                    f"one VM at a time. Remove it there first (`qm set {vmid} --delete {other_slot}`) or choose another GPU")
        if s.pcie and not _is_q35(facts.config.get("machine")):
            machine = facts.config.get("machine") or "i440fx (the default)"
            refusals.append(f"{key}.pcie = True: VM {spec.vm_id}'s machine type is {machine}, and PCIe passthrough needs q35. Changing the "
                            f"machine type of a running node changes its PCI layout (NIC and disk names in the guest can change), so it is "
                            f"your decision: `qm set {spec.vm_id} --machine q35` and a cold start (qm shutdown, qm start), or set {key}.pcie: false")
        if s.mapping and spec.check_mappings and facts.mappings is not None and s.mapping not in facts.mappings:
            refusals.append(f"{key}.mappingName = {s.mapping!r}: there is no PCI mapping of that name on the cluster; `pulumi up` creates it "
                            f"(GpuVm) before writing the slot, or create it yourself (Datacenter > Resource Mappings) and run again")
    return refusals


def plan_attach(spec: AdoptSpec, facts: VmFacts, previous: dict[str, str | None] | None = None) -> AdoptPlan:
    """The owned keys to write. ``previous`` is what an earlier run recorded
    (kept: the value before this program came is what undo restores)."""
    if not facts.exists:
        return AdoptPlan(spec.vm_id, facts.digest, refusals=(_missing(spec),))
    refusals = _slot_refusals(spec, facts)
    if refusals:
        return AdoptPlan(spec.vm_id, facts.digest, refusals=tuple(refusals))
    recorded = dict(previous or {})
    wanted = {s.slot: s.value for s in spec.slots} | {BALLOON: "0"}
    changes, notes, before = [], [], {}
    for key, new in wanted.items():
        old = facts.config.get(key)
        before[key] = recorded[key] if key in recorded else old
        if old == new:
            notes.append(f"{key} is {new} already")
            continue
        reason = "ballooning off: passthrough pins all guest memory" if key == BALLOON else \
            ("pass the GPU through" if old is None else "same device, this program's flags")
        changes.append(Change(key, old, new, reason))
    return AdoptPlan(spec.vm_id, facts.digest, changes=tuple(changes), notes=tuple(notes), previous=before, written=wanted)


def plan_undo(spec: AdoptSpec, facts: VmFacts, previous: dict[str, str | None], written: dict[str, str]) -> AdoptPlan:
    """Put back what the owned keys held before: a slot this program added is
    deleted, the balloon value it replaced restored. A key someone changed
    since this program wrote it is left as it is, and said so."""
    if not facts.exists:
        return AdoptPlan(spec.vm_id, facts.digest, notes=(f"VM {spec.vm_id} is gone: nothing to restore",))
    changes, notes = [], []
    for key, wrote in written.items():
        now, before = facts.config.get(key), previous.get(key)
        if now == before:
            notes.append(f"{key} holds what it held before ({before if before is not None else 'unset'})")
        elif now != wrote:
            notes.append(f"{key} was changed by someone else since this program wrote {wrote!r} (now {now!r}): left as it is")
        else:
            reason = "remove the slot this program added" if before is None else f"restore {before!r}"
            changes.append(Change(key, now, before, reason))
    return AdoptPlan(spec.vm_id, facts.digest, changes=tuple(changes), notes=tuple(notes), previous=dict(previous), written={})
