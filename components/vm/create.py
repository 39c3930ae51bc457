"""The pure planners of GpuVm's ``create`` mode (and of `render`): the
VmLegacy arguments, the hostpci blocks and the PCI mappings.

Rows 1-4 of the README's "What the guide gets wrong" table shape this:
`VmLegacy` (the new `Vm` has no hostpci), `device` is the slot name and the
address goes in `id` or a PCI mapping, machine q35 for PCIe, ballooning off
because passthrough pins guest memory. Pure: no Pulumi SDK (the component,
component.py, fills in the host's facts as outputs).
"""

from __future__ import annotations

from typing import Any

from components.config import StackConfig


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
    disks = vm.all_disks
    return {
        "node_name": cfg.proxmox.node,
        "vm_id": vm.vm_id,
        "name": vm.name,
        "description": vm.description,
        "tags": sorted(vm.tags),
        "machine": vm.machine,
        "bios": vm.bios,
        "efi_disk": {"datastore_id": disks[0].datastore_id, "file_format": "raw", "type": "4m"} if vm.bios == "ovmf" and disks else None,
        "on_boot": vm.on_boot,
        "operating_system": {"type": "l26"},
        "agent": {"enabled": "siderolabs/qemu-guest-agent" in cfg.talos.extensions.extra},
        "cpu": {"cores": vm.cores, "sockets": vm.sockets, "type": vm.cpu_type},
        # floating=0: no balloon device; passthrough pins all guest memory (README table, row 4).
        "memory": {"dedicated": vm.memory_mib, "floating": 0},
        "scsi_hardware": "virtio-scsi-single",
        "disks": [{"interface": disk.interface, "datastore_id": disk.datastore_id, "size": disk.size_gib, "file_format": "raw"} for disk in disks],
        "cdrom": {"file_id": vm.boot_iso, "interface": "ide2"} if vm.boot_iso else None,
        "network_devices": [{"bridge": nic.bridge, "vlan_id": nic.vlan_id, "mac_address": nic.mac_address, "model": nic.model}
                            for nic in vm.all_networks],
        "hostpcis": hostpci_entries(cfg),
        "timeout_start_vm": vm.start_timeout,
        # Never let the provider reboot or power off the VM by itself when an
        # update needs it (VmLegacy's default is true): a restart is this
        # program's, with the node drained (docs/vm.md).
        "reboot_after_update": False,
        # Never let a destroy take the VM's disks with it unless asked.
        "delete_unreferenced_disks_on_destroy": False,
    }

