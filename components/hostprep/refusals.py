"""What the planner refuses before it writes anything: a boot it cannot
tell, an IOMMU off in the firmware, a GPU that is not there or not
isolated, a device `ids=` would take from the host, conflicting vfio
options."""

from __future__ import annotations

from components.hostprep.cmdline import token_key
from components.hostprep.facts import VFIO_FILE, HostFacts, PciFunction, shown
from components.hostprep.inputs import GpuSpec, HostPrepInputs
from components.hostprep.module_files import BLACKLISTED
from components.hostprep.plan_model import Refusal
from components.hostprep.vfio_file import Block


def plan_refusals(inputs: HostPrepInputs, facts: HostFacts, owner: str, blocks: dict[str, Block]) -> tuple[list[Refusal], list[str], bool]:
    """(refusals, notes, isolation must be checked after the first boot)."""
    refusals: list[Refusal] = []
    notes: list[str] = []
    running = facts.cmdline.split()
    kernel = facts.kernel_version
    defer_isolation = False

    if facts.bootloader_problem:
        refusals.append(Refusal(None, (
            f"cannot tell how this host boots: {facts.bootloader_problem}. Editing the wrong boot configuration would "
            "reboot for nothing, so nothing was written. Check `proxmox-boot-tool status` and `efibootmgr -v` on the host "
            "(pve-docs: \"Determine which Bootloader is Used\").")))

    # IOMMU: expected off (we turn it on) or off in the firmware (refuse).
    if not facts.iommu_active:
        if facts.cpu_vendor == "amd" and any(t in running for t in ("amd_iommu=off", "iommu=off")):
            refusals.append(Refusal(None, "the running kernel command line turns the IOMMU off (amd_iommu=off or iommu=off); remove it from the boot configuration first"))
        elif facts.cpu_vendor == "intel" and "intel_iommu=on" not in running and (kernel < (6, 8) or "intel_iommu=off" in running):
            defer_isolation = True
            notes.append(f"IOMMU is not active yet: expected on Intel with kernel {facts.kernel_release} without intel_iommu=on; "
                         "this plan turns it on, and IOMMU group isolation is checked right after the reboot")
        else:
            why = ("AMD CPUs have it on by default" if facts.cpu_vendor == "amd"  # the facts know no other vendor than these two
                   else "Intel CPUs have it on by default from kernel 6.8" if kernel >= (6, 8) else "intel_iommu=on is already on the command line")
            refusals.append(Refusal(None, (
                f"the IOMMU is not active although it should be ({why}): "
                "it is switched off in the firmware. Enable VT-d (Intel) or AMD-Vi/IOMMU and SVM (AMD) in the BIOS/UEFI setup, boot, and re-run. Nothing was written.")))

    claimed_other: set[str] = {address for o, block in blocks.items() if o != owner for address, _, _ in block.functions}
    ours: list[tuple[GpuSpec, PciFunction]] = []  # each function passed through, with the GPU it is a function of
    for gpu in inputs.gpus:
        functions = facts.slot_functions(gpu.address)
        first = facts.functions.get(gpu.address)
        if first is None:
            found = ", ".join(f"{a} ({d.vendor_device} {d.kind})" for a, d in facts.devices.items() if d.vendor_device.startswith("10de:") and not d.is_bridge)
            refusals.append(Refusal(gpu.key("address"), f"{gpu.address!r}: no such PCI device on the host" + (f"; NVIDIA devices present: {found}" if found else "")))
            continue
        ours.extend((gpu, fn) for fn in functions)
        if gpu.id and gpu.id != first.vendor_device:
            refusals.append(Refusal(gpu.key("id"), f"{gpu.id!r}, but {gpu.address} is {first.vendor_device} ({first.kind}); set the id lspci -nn shows"))
        if gpu.subsystem_id and first.subsystem_id and gpu.subsystem_id != first.subsystem_id:
            refusals.append(Refusal(gpu.key("subsystemId"), f"{gpu.subsystem_id!r}, but {gpu.address} reports subsystem {first.subsystem_id}"))
        if gpu.address in claimed_other:
            other = next(o for o, b in blocks.items() if o != owner and any(a == gpu.address for a, _, _ in b.functions))
            refusals.append(Refusal(gpu.key("address"), f"{gpu.address!r} is already passed through by stack {other}; one GPU can go to one VM"))
        if facts.iommu_active:
            unreadable = [fn.address for fn in functions if fn.iommu_group is None]
            if unreadable:
                refusals.append(Refusal(gpu.key("address"), (
                    f"the IOMMU is active but the IOMMU group of {', '.join(unreadable)} cannot be read "
                    "(no /sys/bus/pci/devices/<address>/iommu_group); its isolation cannot be checked, so nothing was written")))
                continue
            if gpu.iommu_group is not None and gpu.iommu_group != first.iommu_group:
                refusals.append(Refusal(gpu.key("iommuGroup"), f"{gpu.iommu_group!r}, but {gpu.address} is in IOMMU group {first.iommu_group}"))
            problem = isolation_problem(gpu, functions, facts)
            if problem:
                refusals.append(Refusal(gpu.key("address"), problem))

    # `ids=` binds by model: a same-model device that stays with the host would be taken too.
    claimed = {fn.address for _, fn in ours} | claimed_other
    for gpu, fn in ours:
        for other in facts.devices.values():
            if other.vendor_device == fn.vendor_device and other.address not in claimed:
                refusals.append(Refusal(gpu.key("id" if gpu.id else "address"), (
                    f"{other.address} is the same model ({fn.vendor_device}) as {fn.address} and stays with the host; "
                    "`options vfio-pci ids=` binds by model, so it would take that device from the host too. "
                    "Pass both through (list both in gpus), or bind per device (driver_override), which this program does not do.")))
    # The blacklist takes these drivers from every device at the next boot.
    for other in facts.devices.values():
        if other.address in claimed or other.driver not in BLACKLISTED or other.is_bridge:
            continue
        if other.driver.startswith("nvidia") and other.driver != "nvidiafb":
            refusals.append(Refusal(None, (
                f"{other.address} ({other.vendor_device} {other.kind}) stays with the host and uses the proprietary driver {other.driver}; "
                f"blacklisting {', '.join(BLACKLISTED)} would take it away at the next boot. Pass it through too, or prepare this host by hand.")))
        else:
            notes.append(f"{other.address} ({other.vendor_device} {other.kind}) stays with the host and loses driver {other.driver} "
                         "at the next boot (blacklisted); the host console falls back to the firmware framebuffer")
    for path, line in facts.foreign_vfio_options:
        refusals.append(Refusal(None, (
            f"{path} sets `{shown(line, 100)}`; vfio-pci options are last-wins, so two files fight over them. "
            f"Remove that line (proxmox-talos-gpu keeps the one ids= line in {VFIO_FILE}) and re-run.")))
    for token in running:
        if token_key(token) in ("vfio-pci.ids", "vfio_pci.ids"):
            refusals.append(Refusal(None, f"the kernel command line sets {shown(token)}; it overrides {VFIO_FILE}. Remove it from the boot configuration and re-run."))
    return refusals, notes, defer_isolation


def isolation_problem(gpu: GpuSpec, functions: list[PciFunction], facts: HostFacts) -> str | None:
    """A message when a GPU's IOMMU group holds anything but its own functions and PCI bridges."""
    own = {fn.address for fn in functions}
    offenders: dict[str, PciFunction] = {}
    for fn in functions:
        for member in fn.group_members:
            device = facts.devices.get(member)
            if member not in own and not (device and device.is_bridge):
                offenders[member] = device or PciFunction(member, "?", "0x000000", None, None, fn.iommu_group)
    if not offenders:
        return None
    first = functions[0]
    listed = "; ".join(f"{d.address} ({d.kind} {d.vendor_device}, driver {d.driver or 'none'})" for d in offenders.values())
    return (f"IOMMU group {first.iommu_group} of {gpu.address} also holds {listed}. Passing the GPU through would hand those "
            "devices to the VM too (and cut the host off them). Move the card to another slot (one whose group holds only the GPU), "
            "or enable ACS for that slot in the firmware; nothing was written.")
