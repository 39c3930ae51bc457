"""The contents of the driver blacklist and the VFIO module list this
program writes."""

from __future__ import annotations

BLACKLISTED = ("nouveau", "nvidia", "nvidia_drm", "nvidia_modeset", "nvidia_uvm", "nvidiafb")
VFIO_MODULES = ("vfio", "vfio_iommu_type1", "vfio_pci")


def blacklist_content() -> str:
    lines = ["# Managed by proxmox-talos-gpu: keep host GPU drivers off passed-through GPUs."]
    lines += [f"blacklist {module}" for module in BLACKLISTED]
    return "\n".join(lines) + "\n"


def modules_load_content(kernel: tuple[int, int]) -> str:
    modules = list(VFIO_MODULES)
    if kernel < (6, 2):
        modules.append("vfio_virqfd")  # a separate module only before 6.2 (pve-docs qm-pci-passthrough)
    return "# Managed by proxmox-talos-gpu: VFIO modules for PCI passthrough.\n" + "\n".join(modules) + "\n"
