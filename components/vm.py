"""GpuVm: the Talos VM on Proxmox with the GPU(s) passed through.

Facts 1-4 of DESIGN.md shape this: `VmLegacy` (the new `Vm` has no hostpci),
`device` is the slot name and the address goes in `id` or a PCI mapping,
machine q35 for PCIe, ballooning off because passthrough pins guest memory.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_proxmoxve as proxmoxve

from components.config import StackConfig
from components.options import child_options


def _lookup(mapping: pulumi.Input[dict[str, Any]] | None, key: str, fallback: Any) -> pulumi.Input[Any]:
    """Value for one GPU from a host-facts output (e.g. IOMMU group by address),
    falling back to the configured value when host preparation is off."""
    if mapping is None:
        return fallback
    return pulumi.Output.from_input(mapping).apply(lambda found: found.get(key, fallback))


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
        vm_cfg = cfg.vm
        hostpcis: list[proxmoxve.VmLegacyHostpciArgs] = []
        mappings: list[proxmoxve.hardware.mapping.Pci] = []
        self.slots, self.mapping_names = [], []
        for index, gpu in enumerate(cfg.gpus):
            slot = cfg.slot(index)
            self.slots.append(slot)
            device = {"pcie": gpu.pcie, "rombar": gpu.rombar, "xvga": gpu.xvga}
            if gpu.passthrough == "mapping":
                # A cluster-level PCI mapping lets API tokens with Mapping.Use
                # attach the device; raw ids are root@pam-only (fact 3).
                mapping_name = cfg.mapping_name(index)
                self.mapping_names.append(mapping_name)
                mapping = proxmoxve.hardware.mapping.Pci(
                    mapping_name,
                    name=mapping_name,
                    comment=f"{gpu.id} at {gpu.address} for VM {vm_cfg.vm_id} ({vm_cfg.name}), managed by Pulumi",
                    maps=[proxmoxve.hardware.mapping.PciMapArgs(
                        id=gpu.id,
                        node=cfg.proxmox.node,
                        path=gpu.address,
                        iommu_group=_lookup(iommu_groups, gpu.address, gpu.iommu_group),
                        subsystem_id=_lookup(subsystem_ids, gpu.address, gpu.subsystem_id),
                    )],
                    opts=child_options(self, opts),
                )
                mappings.append(mapping)
                hostpcis.append(proxmoxve.VmLegacyHostpciArgs(device=slot, mapping=mapping.name, **device))
            else:
                hostpcis.append(proxmoxve.VmLegacyHostpciArgs(device=slot, id=gpu.address, **device))

        efi_disk = None
        if vm_cfg.bios == "ovmf":
            efi_disk = proxmoxve.VmLegacyEfiDiskArgs(datastore_id=vm_cfg.disk.datastore_id, file_format="raw", type="4m")
        self.vm_id = vm_cfg.vm_id
        self.vm = proxmoxve.VmLegacy(
            name,
            node_name=cfg.proxmox.node,
            vm_id=vm_cfg.vm_id,
            name=vm_cfg.name,
            description=vm_cfg.description,
            tags=sorted(vm_cfg.tags),
            machine=vm_cfg.machine,
            bios=vm_cfg.bios,
            efi_disk=efi_disk,
            on_boot=vm_cfg.on_boot,
            operating_system=proxmoxve.VmLegacyOperatingSystemArgs(type="l26"),
            agent=proxmoxve.VmLegacyAgentArgs(enabled="siderolabs/qemu-guest-agent" in cfg.talos.extensions.extra),
            cpu=proxmoxve.VmLegacyCpuArgs(cores=vm_cfg.cores, sockets=vm_cfg.sockets, type=vm_cfg.cpu_type),
            # floating=0: no balloon device; passthrough pins all guest memory (fact 4).
            memory=proxmoxve.VmLegacyMemoryArgs(dedicated=vm_cfg.memory_mib, floating=0),
            scsi_hardware="virtio-scsi-single",
            disks=[proxmoxve.VmLegacyDiskArgs(
                interface=vm_cfg.disk.interface,
                datastore_id=vm_cfg.disk.datastore_id,
                size=vm_cfg.disk.size_gib,
                file_format="raw",
            )],
            cdrom=proxmoxve.VmLegacyCdromArgs(file_id=vm_cfg.boot_iso, interface="ide2") if vm_cfg.boot_iso else None,
            network_devices=[proxmoxve.VmLegacyNetworkDeviceArgs(
                bridge=vm_cfg.network.bridge,
                vlan_id=vm_cfg.network.vlan_id,
                mac_address=vm_cfg.network.mac_address,
                model=vm_cfg.network.model,
            )],
            hostpcis=hostpcis,
            timeout_start_vm=vm_cfg.start_timeout,
            # Never let a destroy take the VM's disks with it unless asked.
            delete_unreferenced_disks_on_destroy=False,
            opts=child_options(self, opts, depends_on=mappings, retain_on_delete=vm_cfg.retain_on_destroy),
        )
        self.register_outputs({
            "vmId": vm_cfg.vm_id,
            "name": vm_cfg.name,
            "machine": vm_cfg.machine,
            "hostpciSlots": self.slots,
            "pciMappings": self.mapping_names,
        })
