"""The VM layer: GpuVm (components/vm/component.py), its ``create``-mode
planners (create.py), the ``existing``-mode adopt planner (adopt.py), the
Proxmox API transport (api.py), the drained restart (restart.py), the
dynamic provider (provider.py) and the CLI (``python -m components.vm``)."""

from components.vm.component import GpuVm
from components.vm.create import _lookup, hostpci_entries, pci_mappings, vm_args

__all__ = ["GpuVm", "_lookup", "hostpci_entries", "pci_mappings", "vm_args"]
