"""The VM layer: GpuVm (components/vm/component.py), its ``create``-mode
planners (create.py), the ``existing``-mode adopt planner (adopt.py), the
Proxmox API transport (api.py), the drained restart (restart.py), the
dynamic provider (provider.py) and the CLI (tools/vm.py, also run as
``python -m components.vm``)."""

from __future__ import annotations

from typing import Any

__all__ = ["GpuVm", "_lookup", "hostpci_entries", "pci_mappings", "vm_args"]


def __getattr__(name: str) -> Any:
    # Lazy, so a submodule (the CLI's API client, restart) loads neither the
    # Pulumi component nor the config it does not use.
    if name in ("GpuVm", "_lookup"):
        from components.vm import component

        return getattr(component, name)
    if name in ("hostpci_entries", "pci_mappings", "vm_args"):
        from components.vm import create

        return getattr(create, name)
    raise AttributeError(name)
