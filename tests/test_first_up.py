"""The first `pulumi up`'s host preparation, the engine's way (benchmarks/
first_up.py's scenario): with the IOMMU on, no host reboot and no other guest
stopped, the GPU on vfio-pci; with it off, exactly one reboot; the VM
restarted at most once for the attach and Talos once per version step
(2), every restart drained first."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.first_up import scenario
from benchmarks.hostprep import keys

pytestmark = pytest.mark.sshd


def test_iommu_on_reboots_nothing_and_stops_no_other_guest(tmp_path: Path) -> None:
    keys(tmp_path)
    result = scenario("iommu on", tmp_path / "host", tmp_path)
    assert (result["host_reboots"], result["other_guests_stopped"], result["gpu_driver"]) == (0, [], "vfio-pci"), result
    # The attach: at most one VM restart, drained first; the OSD disk stays.
    assert result["vm_restarts"] <= 1 and result["vm_restarts_drained"] == result["vm_restarts"], result
    assert result["vm_started_with_gpu"] and result["vm_kept_osd_disk"], result
    # The Talos walk v1.11.6 -> v1.12.x -> v1.13.9: one reboot per step, each drained.
    assert (result["talos_reboots"], result["talos_reboots_drained"], result["talos_version"]) == (2, 2, "v1.13.9"), result
    assert result["node_restarts"] <= 2 + 1 and result["node_restarts_drained"] == result["node_restarts"], result


def test_iommu_off_reboots_once(tmp_path: Path) -> None:
    keys(tmp_path)
    result = scenario("iommu off", tmp_path / "host", tmp_path)
    assert (result["host_reboots"], result["gpu_driver"]) == (1, "vfio-pci"), result
    # The reboot restarts the node's VM too: drained first by host preparation.
    assert (result["host_node_restarts"], result["host_node_restarts_drained"]) == (1, 1), result
    assert result["node_restarts"] == 1 + result["vm_restarts"] + 2 and result["node_restarts_drained"] == result["node_restarts"], result

