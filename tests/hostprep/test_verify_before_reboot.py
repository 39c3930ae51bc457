"""Verification when the host has not rebooted since the files were
written: with the IOMMU already on, kernel parameters still missing from
/proc/cmdline wait in the boot configuration and are no problem, and the
check names every one of them."""

from __future__ import annotations

import dataclasses

from components.hostprep.plan import plan_host
from components.hostprep.results import written
from components.hostprep.verify import verify_host
from tests.hostprep.test_plan import OWNER, T4_INPUTS, host, t4

# host.intelIommu: on asks for intel_iommu=on even on a kernel (6.8) that turns the IOMMU on by itself.
INTEL_ON = dataclasses.replace(T4_INPUTS, intel_iommu="on")


def prepared_without_reboot():
    # The T4 already on vfio-pci (as Proxmox binds it when a VM that passes it through starts), the IOMMU on.
    fresh = host(kernel="6.8.12-4-pve", iommu=True, gpu=[t4(driver="vfio-pci")])
    plan = plan_host(INTEL_ON, fresh, OWNER)
    assert not plan.reboot and plan.wanted_cmdline == ("intel_iommu=on", "iommu=pt")
    return written(fresh, plan)


def test_parameters_waiting_for_the_next_boot_are_each_named_and_no_problem():
    report = verify_host(INTEL_ON, prepared_without_reboot(), OWNER)
    assert report.ok
    assert report.checks == ("IOMMU active", "0000:3b:00.0 (10de:1eb8) bound to vfio-pci",
                             "intel_iommu=on iommu=pt: in the boot configuration, applies at the next boot")


def test_after_a_reboot_the_same_missing_parameters_are_a_problem():
    report = verify_host(INTEL_ON, prepared_without_reboot(), OWNER, booted=True)
    assert report.problems == ("/proc/cmdline lacks intel_iommu=on iommu=pt (running: BOOT_IMAGE=/boot/vmlinuz ro quiet)",)
