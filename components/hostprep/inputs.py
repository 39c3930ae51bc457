"""The planner's inputs: the GPUs to pass through and the host policy
(reboots, running guests, hand edits), from the stack config or the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from components.config import StackConfig


PROJECT_KEY = "proxmox-talos-gpu"
RUNNING_GUESTS = ("refuse", "stop")
HAND_EDITS = ("refuse", "overwrite")


class PlanError(ValueError):
    """The inputs themselves are unusable (e.g. a malformed owner)."""


@dataclass(frozen=True)
class GpuSpec:
    address: str
    id: str | None = None
    subsystem_id: str | None = None
    iommu_group: int | None = None
    index: int | None = None  # position in gpus[] for error keys; None from the CLI

    def key(self, field_name: str) -> str | None:
        return f"gpus[{self.index}].{field_name}" if self.index is not None else None


@dataclass(frozen=True)
class HostPrepInputs:
    gpus: tuple[GpuSpec, ...]
    intel_iommu: str = "auto"  # "auto" | "on"
    iommu_passthrough: bool = True
    allow_reboot: bool = True
    reboot_on_destroy: bool = False
    running_guests: str = "refuse"  # "refuse" | "stop": may a reboot stop guests other than our own VM?
    own_vmids: tuple[int, ...] = ()  # this stack's VM(s): a reboot may stop them (after draining the node)
    node_name: str | None = None  # this stack's Kubernetes node, drained before a reboot stops its VM
    hand_edits: str = "refuse"  # "refuse" | "overwrite": lines added by hand to files this program wrote


def inputs_from_config(cfg: StackConfig) -> HostPrepInputs:
    return HostPrepInputs(
        gpus=tuple(GpuSpec(address=g.address, id=g.id, subsystem_id=g.subsystem_id, iommu_group=g.iommu_group, index=i) for i, g in enumerate(cfg.gpus)),
        intel_iommu=cfg.host.intel_iommu,
        iommu_passthrough=cfg.host.iommu_passthrough_mode,
        allow_reboot=cfg.host.allow_reboot,
        reboot_on_destroy=cfg.host.reboot_on_destroy,
        running_guests=cfg.host.running_guests,
        own_vmids=(cfg.vm.vm_id,),
        node_name=cfg.node_name,
        hand_edits=cfg.host.hand_edits,
    )
