"""The ``vm`` section: the Proxmox VM of the node, its disks and NICs, and
the rules that span its keys.

``vm.source`` says whose VM it is:

- ``existing`` (the default): the VM is there already (often made by
  Terraform). The program owns only the ``hostpciN`` slots of ``gpus[]`` and
  ``balloon: 0``, read and written through the Proxmox API with its digest
  (components/vm/adopt.py); every other key of the VM stays as it is, and the
  create-mode keys below describe nothing the program writes.
- ``create``: the program creates the VM (pulumi-proxmoxve ``VmLegacy``) from
  ``vm.disks[]`` (or the single ``vm.disk``), ``vm.networks[]`` (or
  ``vm.network``) and the CPU, memory and boot keys.

``vm.restart`` says who restarts the VM when a GPU slot or the balloon change
is pending (Proxmox applies neither to a running VM: docs/vm.md):
``drained`` (cordon and drain the node, restart through Proxmox, wait, uncordon)
or ``never`` (the change stays pending until the user restarts the VM).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from components.config.values import DnsLabel, MacAddress, Section
from components.proxmox_limits import MEMORY_MIB_MAX, check_cpu_type

VmSource = Literal["existing", "create"]
RestartMode = Literal["drained", "never"]

DEFAULT_DISK_INTERFACE = "scsi0"


class DiskConfig(Section):
    datastore_id: str
    size_gib: Annotated[int, Field(ge=8, le=65536, alias="sizeGiB")]
    interface: Annotated[str, Field(pattern=r"^(scsi|virtio|sata)\d{1,2}$")] = DEFAULT_DISK_INTERFACE


class NetworkConfig(Section):
    bridge: str = "vmbr0"
    vlan_id: Annotated[int, Field(ge=1, le=4094)] | None = None
    mac_address: MacAddress | None = None
    model: Literal["virtio", "e1000", "rtl8139", "vmxnet3"] = "virtio"


class VmConfig(Section):
    vm_id: Annotated[int, Field(ge=100, le=999_999_999)]
    name: DnsLabel
    description: str = ""
    tags: list[Annotated[str, Field(pattern=r"^[a-z0-9_][a-z0-9_.+-]*$")]] = []
    cores: Annotated[int, Field(ge=1, le=512)] = 4
    sockets: Annotated[int, Field(ge=1, le=8)] = 1
    cpu_type: Annotated[str, AfterValidator(check_cpu_type)] = "host"
    memory_mib: Annotated[int, Field(ge=1024, le=MEMORY_MIB_MAX, alias="memoryMiB")] = 8192
    machine: Literal["q35", "pc"] = "q35"
    bios: Literal["seabios", "ovmf"] = "seabios"
    # Adopt the VM that exists or create it, and who restarts it: the module docstring, docs/vm.md.
    source: VmSource = "existing"
    restart: RestartMode = "drained"
    restart_timeout_seconds: Annotated[int, Field(ge=60, le=7200)] = 900
    drain_timeout_seconds: Annotated[int, Field(ge=10, le=7200)] = 300
    disk: DiskConfig | None = None
    disks: list[DiskConfig] = []
    network: NetworkConfig = NetworkConfig()
    networks: list[NetworkConfig] = []
    boot_iso: str | None = None
    on_boot: bool = True
    start_timeout_seconds: Annotated[int, Field(ge=60, le=7200)] | None = None
    # `pulumi destroy` leaves the VM and its disks in place (they may hold
    # Ceph OSDs); set false to let destroy delete a VM this stack created.
    retain_on_destroy: bool = True

    @property
    def network_set(self) -> bool:
        return "network" in self.model_fields_set

    @property
    def all_disks(self) -> list[DiskConfig]:
        """The disks of ``create`` mode: vm.disks[], else the single vm.disk."""
        return list(self.disks) or ([self.disk] if self.disk is not None else [])

    @property
    def all_networks(self) -> list[NetworkConfig]:
        """The NICs of ``create`` mode: vm.networks[], else the single vm.network."""
        return list(self.networks) or [self.network]

    @property
    def start_timeout(self) -> int:
        """Passthrough pins all guest memory at start, so larger VMs start slower
        (README "What the guide gets wrong", row 4): 5 minutes plus 2 s per GiB unless set explicitly."""
        return self.start_timeout_seconds or 300 + 2 * (self.memory_mib // 1024)


def vm_issues(vm: VmConfig) -> list[tuple[str, Any, str]]:
    """(key, value, what is allowed) for the rules that span the VM's keys."""
    issues: list[tuple[str, Any, str]] = []
    if vm.disk is not None and vm.disks:
        issues.append(("vm.disks", "(set)", "give the disks either as vm.disk (one disk) or as vm.disks[] (any number), not both"))
    if vm.network_set and vm.networks:
        issues.append(("vm.networks", "(set)", "give the NICs either as vm.network (one NIC) or as vm.networks[] (any number), not both"))
    if vm.source == "create" and vm.disk is None and not vm.disks:
        issues.append(("vm.disks", None, "vm.source: create needs at least one disk: vm.disks[] (or vm.disk) with datastoreId and sizeGiB"))
    seen: dict[str, int] = {}
    for index, disk in enumerate(vm.disks):
        if disk.interface in seen:
            issues.append((f"vm.disks[{index}].interface", disk.interface,
                           f"each disk needs its own interface; {disk.interface} is already vm.disks[{seen[disk.interface]}]"))
        seen.setdefault(disk.interface, index)
    return issues
