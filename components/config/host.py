"""The Proxmox host's sections: API access (``proxmox``), SSH access for the
VFIO preparation (``host``) and the GPUs to pass through (``gpus[]``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from components.config.values import HostKey, HostpciSlot, HttpsUrl, PciAddress, Section, VendorDevice
from components.gpu_chips import chip_row
from components.pci import pci_device
from components.proxmox_limits import check_config_id, check_username


class ProxmoxConfig(Section):
    endpoint: HttpsUrl
    node: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")]
    # apiToken: PROXMOX_VE_API_TOKEN / proxmoxApiToken. password: root@pam
    # with PROXMOX_VE_PASSWORD / proxmoxPassword (needed for raw-id hostpci).
    auth_method: Literal["apiToken", "password"] = "apiToken"
    username: Annotated[str, AfterValidator(check_username)] | None = None
    insecure: bool = False


class HostPrepConfig(Section):
    """SSH access to the Proxmox host for VFIO preparation (HostVfioPrep)."""

    enabled: bool = True
    address: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    user: str = "root"
    host_key: HostKey | None = None
    allow_reboot: bool = True
    reboot_timeout_seconds: Annotated[int, Field(ge=30, le=3600)] = 600
    reboot_on_destroy: bool = False
    # "auto": intel_iommu=on only on Intel with a kernel older than 6.8.
    intel_iommu: Literal["auto", "on"] = "auto"
    iommu_passthrough_mode: bool = True
    # A reboot stops every guest on the host. "refuse": not while guests other
    # than this stack's VM (vm.vmId) run; "stop": Proxmox shuts them down.
    running_guests: Literal["refuse", "stop"] = "refuse"
    command_timeout_seconds: Annotated[int, Field(ge=10, le=7200)] = 900
    drain_timeout_seconds: Annotated[int, Field(ge=10, le=7200)] = 300
    guest_timeout_seconds: Annotated[int, Field(ge=10, le=7200)] = 600
    # Lines added by hand to a file this program wrote: "refuse" to drop them, or "overwrite".
    hand_edits: Literal["refuse", "overwrite"] = "refuse"


class GpuConfig(Section):
    address: PciAddress
    id: VendorDevice
    subsystem_id: VendorDevice | None = None
    iommu_group: Annotated[int, Field(ge=0)] | None = None
    slot: HostpciSlot | None = None
    passthrough: Literal["mapping", "raw"] = "mapping"
    mapping_name: Annotated[str, AfterValidator(check_config_id)] | None = None
    pcie: bool = True
    rombar: bool = True
    xvga: bool = False
    generation: Literal["pascal", "volta", "turing", "ampere", "ada", "hopper", "blackwell"] | None = None
    # The chip, where chips of one generation differ in their video engines
    # (components.gpu_capabilities.CHIPS): GA100 and GH100 have no NVENC.
    # lspci's chip names (GA106, TU104GL) are read as their row (components/gpu_chips.py).
    model: Annotated[Literal["gp108", "gp10x", "gv100", "tu10x", "tu11x", "ga100", "ga10x", "ad10x", "gh100", "gb100", "gb20x"],
                     BeforeValidator(chip_row)] | None = None
    mig: bool = False
    # Pass every function of the card (GPU, HDMI audio, USB-C ...): the PCI
    # mapping's path (or the raw id) leaves the function off, which Proxmox
    # reads as the whole device (PVE/Mapping/PCI.pm; the GUI's "All Functions").
    all_functions: bool = False

    @property
    def device_path(self) -> str:
        """What the mapping's ``path`` (or the raw ``id``) holds: the function's
        address, or the device's (no ``.function``) with ``allFunctions``."""
        return pci_device(self.address) if self.all_functions else self.address
