"""Verification (pure): is the running host what the plan wanted?"""

from __future__ import annotations

from dataclasses import dataclass

from components.hostprep.facts import HostFacts
from components.hostprep.inputs import PROJECT_KEY, HostPrepInputs, PlanError
from components.hostprep.plan import plan_host, wanted_cmdline_tokens
from components.hostprep.refusals import isolation_problem


@dataclass(frozen=True)
class VerifyReport:
    problems: tuple[str, ...]
    checks: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_host(inputs: HostPrepInputs, facts: HostFacts, owner: str, *, booted: bool = False) -> VerifyReport:
    """Running-state checks: IOMMU on, groups isolated, every function on
    vfio-pci, nothing left to write. The planned kernel parameters must be on
    /proc/cmdline after a reboot (``booted``); without one they wait in the
    boot configuration for the next boot."""
    problems, checks = [], []
    if not facts.iommu_active:
        problems.append("the IOMMU is not active: enable VT-d (Intel) or AMD-Vi (AMD) in the firmware, and check the kernel command line")
    else:
        checks.append("IOMMU active")
    for gpu in inputs.gpus:
        functions = facts.slot_functions(gpu.address)
        if not functions:
            problems.append(f"{gpu.address}: no such PCI device on the host")
            continue
        if facts.iommu_active:
            problem = isolation_problem(gpu, functions, facts)
            if problem:
                problems.append(problem.replace("; nothing was written.", ". The host files are written; run undo to revert them."))
            first = functions[0]
            if gpu.iommu_group is not None and first.iommu_group != gpu.iommu_group:
                problems.append(f"{PROJECT_KEY}:{gpu.key('iommuGroup')}: {gpu.iommu_group!r}, but {gpu.address} is in IOMMU group {first.iommu_group}")
        for fn in functions:
            if fn.driver == "vfio-pci":
                checks.append(f"{fn.address} ({fn.vendor_device}) bound to vfio-pci")
            else:
                problems.append(f"{fn.address} ({fn.vendor_device} {fn.kind}) is bound to {fn.driver or 'no driver'}, not vfio-pci "
                                "(check `lspci -nnk -s " + fn.address + "` and `dmesg | grep -i vfio`)")
    tokens, _ = wanted_cmdline_tokens(inputs, facts)
    missing = [t for t in tokens if t not in facts.cmdline.split()]
    if missing and (booted or not facts.iommu_active):
        problems.append(f"/proc/cmdline lacks {' '.join(missing)} (running: {facts.cmdline})")
    elif missing:
        checks.append(f"{' '.join(missing)}: in the boot configuration, applies at the next boot")
    elif tokens:
        checks.append(f"/proc/cmdline has {' '.join(tokens)}")
    try:
        plan = plan_host(inputs, facts, owner)
    except PlanError as error:
        problems.append(str(error))
    else:
        if plan.files or plan.commands:
            pending = [c.path for c in plan.files] + [" ".join(c.argv) for c in plan.commands]
            problems.append(f"host files are not as planned: {', '.join(pending)} still to do")
    return VerifyReport(tuple(problems), tuple(checks))
