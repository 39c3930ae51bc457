"""GpuVm: the Talos VM on Proxmox with the GPU(s) passed through.

Rows 1-4 of the README's "What the guide gets wrong" table shape this:
`VmLegacy` (the new `Vm` has no hostpci), `device` is the slot name and the
address goes in `id` or a PCI mapping, machine q35 for PCIe, ballooning off
because passthrough pins guest memory.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_proxmoxve as proxmoxve

from components.config import StackConfig
from components.options import child_options


def hostpci_entries(cfg: StackConfig) -> list[dict[str, Any]]:
    """One `hostpci` block per GPU: slot name in `device`, then either the PCI
    mapping's name (works with API tokens) or the raw address (root@pam only)."""
    entries = []
    for index, gpu in enumerate(cfg.gpus):
        entry: dict[str, Any] = {"device": cfg.slot(index)}
        if gpu.passthrough == "mapping":
            entry["mapping"] = cfg.mapping_name(index)
        else:
            entry["id"] = gpu.device_path
        entry.update(pcie=gpu.pcie, rombar=gpu.rombar, xvga=gpu.xvga)
        entries.append(entry)
    return entries


def pci_mappings(cfg: StackConfig) -> list[dict[str, Any]]:
    """The PCI resource mappings (hardware.mapping.Pci) for mapped GPUs; IOMMU
    group and subsystem id as configured (host facts fill them in at run time).
    With ``allFunctions`` the path has no function: the whole device."""
    return [
        {
            "name": cfg.mapping_name(index),
            "comment": f"{gpu.id} at {gpu.device_path} for VM {cfg.vm.vm_id} ({cfg.vm.name}), managed by Pulumi",
            "maps": [{"id": gpu.id, "node": cfg.proxmox.node, "path": gpu.device_path,
                      "iommu_group": gpu.iommu_group, "subsystem_id": gpu.subsystem_id}],
        }
        for index, gpu in enumerate(cfg.gpus)
        if gpu.passthrough == "mapping"
    ]


def vm_args(cfg: StackConfig) -> dict[str, Any]:
    """The VmLegacy arguments, pure (render writes the same dict)."""
    vm = cfg.vm
    return {
        "node_name": cfg.proxmox.node,
        "vm_id": vm.vm_id,
        "name": vm.name,
        "description": vm.description,
        "tags": sorted(vm.tags),
        "machine": vm.machine,
        "bios": vm.bios,
        "efi_disk": {"datastore_id": vm.disk.datastore_id, "file_format": "raw", "type": "4m"} if vm.bios == "ovmf" else None,
        "on_boot": vm.on_boot,
        "operating_system": {"type": "l26"},
        "agent": {"enabled": "siderolabs/qemu-guest-agent" in cfg.talos.extensions.extra},
        "cpu": {"cores": vm.cores, "sockets": vm.sockets, "type": vm.cpu_type},
        # floating=0: no balloon device; passthrough pins all guest memory (README table, row 4).
        "memory": {"dedicated": vm.memory_mib, "floating": 0},
        "scsi_hardware": "virtio-scsi-single",
        "disks": [{"interface": vm.disk.interface, "datastore_id": vm.disk.datastore_id, "size": vm.disk.size_gib, "file_format": "raw"}],
        "cdrom": {"file_id": vm.boot_iso, "interface": "ide2"} if vm.boot_iso else None,
        "network_devices": [{"bridge": vm.network.bridge, "vlan_id": vm.network.vlan_id,
                             "mac_address": vm.network.mac_address, "model": vm.network.model}],
        "hostpcis": hostpci_entries(cfg),
        "timeout_start_vm": vm.start_timeout,
        # Never let a destroy take the VM's disks with it unless asked.
        "delete_unreferenced_disks_on_destroy": False,
    }


def _lookup(found: pulumi.Input[dict[str, Any]] | None, key: str, fallback: Any) -> pulumi.Input[Any]:
    """One GPU's value from a host-facts output (e.g. IOMMU group by address),
    falling back to the configured value when host preparation is off."""
    if found is None:
        return fallback
    return pulumi.Output.from_input(found).apply(lambda values: (values or {}).get(key, fallback))


class GpuVm(pulumi.ComponentResource):
    vm_id: int
    slots: list[str]
    mapping_names: list[str]
    vm: proxmoxve.VmLegacy

    def __init__(self, name: str, cfg: StackConfig, *,
                 iommu_groups: pulumi.Input[dict[str, int]] | None = None,
                 subsystem_ids: pulumi.Input[dict[str, str]] | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("proxmox-talos-gpu:proxmox:GpuVm", name, None, opts)
        specs = pci_mappings(cfg)
        mapped = [gpu for gpu in cfg.gpus if gpu.passthrough == "mapping"]
        mappings = []
        for spec, gpu in zip(specs, mapped, strict=True):
            # A cluster-level PCI mapping lets API tokens with Mapping.Use
            # attach the device; raw ids are root@pam-only (README table, row 3).
            # The host's facts are keyed by the GPU function's address (with
            # allFunctions Proxmox checks the whole device against function 0).
            (entry,) = spec["maps"]
            entry = {**entry,
                     "iommu_group": _lookup(iommu_groups, gpu.address, entry["iommu_group"]),
                     "subsystem_id": _lookup(subsystem_ids, gpu.address, entry["subsystem_id"])}
            mappings.append(proxmoxve.hardware.mapping.Pci(
                spec["name"], name=spec["name"], comment=spec["comment"],
                maps=[proxmoxve.hardware.mapping.PciMapArgs(**entry)],
                opts=child_options(self, opts),
            ))
        args = vm_args(cfg)
        # Reference each mapping by its output name, so the VM waits for it.
        by_name = {spec["name"]: mapping for spec, mapping in zip(specs, mappings, strict=True)}
        args["hostpcis"] = [{**entry, "mapping": by_name[entry["mapping"]].name} if "mapping" in entry else entry
                            for entry in args["hostpcis"]]
        self.vm_id = cfg.vm.vm_id
        self.slots = [entry["device"] for entry in args["hostpcis"]]
        self.mapping_names = list(by_name)
        self.vm = proxmoxve.VmLegacy(
            name, **args,
            opts=child_options(self, opts, depends_on=mappings, retain_on_delete=cfg.vm.retain_on_destroy),
        )
        self.register_outputs({
            "vmId": cfg.vm.vm_id,
            "name": cfg.vm.name,
            "machine": cfg.vm.machine,
            "hostpciSlots": self.slots,
            "pciMappings": self.mapping_names,
        })
