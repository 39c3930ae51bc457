"""The VM's own config rules, kept out of components/config.py (which
imports this module; this one imports nothing of the project).

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

from typing import Any, Literal

VmSource = Literal["existing", "create"]
RestartMode = Literal["drained", "never"]

DEFAULT_DISK_INTERFACE = "scsi0"


def vm_issues(vm: Any) -> list[tuple[str, Any, str]]:
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
