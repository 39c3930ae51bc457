"""The GPU bound to vfio-pci on the running host when the IOMMU is already
on, a reboot only where one is needed, and undo giving the GPU back, against
the simulated host's sysfs (tests/stand_ins/proxmox_sysfs.py: the kernel's
driver_override / unbind / drivers_probe rules)."""

from __future__ import annotations

import pytest

from components.hostprep.errors import HostPrepError, RebootRequiredError
from components.hostprep.facts import STATE_DIR, VFIO_FILE
from components.hostprep.inputs import GpuSpec
from tests.hostprep.test_scenarios import assert_converged
from tests.stand_ins.proxmox_host_spec import SimDevice, SimGuest, SimSpec, consumer_card, t4

pytestmark = pytest.mark.sshd

T4 = "0000:3b:00.0"
T4_SPEC = (GpuSpec(T4, "10de:1eb8", "10de:12a2", None, 0),)
CARD = (GpuSpec("0000:01:00.0", "10de:2204", index=0),)
K68 = "6.8.12-4-pve"
OTHERS = [SimGuest(101, "k8s-cp-1"), SimGuest(200, "nas", type="lxc")]


def sysfs_writes(sim) -> list[dict]:
    return [c for c in sim.host.calls() if c["tool"] == "sysfs"]


def override(sim, address: str) -> str:
    return (sim.host.root / "sys/bus/pci/devices" / address / "driver_override").read_text().strip()


def test_iommu_on_binds_every_function_live_and_reboots_nothing(make_sim):
    """Intel from 6.8: the IOMMU is on. Other guests run and host.runningGuests is refuse, which does not matter: nothing reboots."""
    sim = make_sim(SimSpec(cpu="intel", kernel=K68, devices=consumer_card(), guests=OTHERS))
    _, plan = sim.engine(CARD).plan()
    assert not plan.reboot and plan.impact is None
    assert [(r.address, r.current, r.target) for r in plan.rebinds] == [
        ("0000:01:00.0", "nouveau", "vfio-pci"), ("0000:01:00.1", "snd_hda_intel", "vfio-pci")]
    result = sim.engine(CARD).apply()
    assert not result.rebooted and sim.host.tool_calls("reboot") == []
    assert sim.host.driver("0000:01:00.0") == "vfio-pci" and sim.host.driver("0000:01:00.1") == "vfio-pci"
    assert result.outputs([g.address for g in CARD])["drivers"] == {"0000:01:00.0": "vfio-pci", "0000:01:00.1": "vfio-pci"}
    assert result.rebound == ["0000:01:00.0 nouveau -> vfio-pci", "0000:01:00.1 snd_hda_intel -> vfio-pci"]
    assert result.restarts == {"host_reboots": 0, "guests_stopped": [], "own_vms_stopped": [], "ha_guests": [], "node": None, "drained_first": None}
    # As the kernel documents it: the override first, then the unbind, then the probe; vfio-pci loaded by modprobe first.
    assert sim.host.tool_calls("modprobe") == [["vfio-pci"]]
    assert [next(k for k in ("driver_override", "unbound", "bound") if k in c) for c in sysfs_writes(sim)] == [
        "driver_override", "unbound", "bound"] * 2
    assert override(sim, "0000:01:00.0") == "vfio-pci"
    assert sim.host.guest_status() == {101: "running", 200: "running"}  # no guest touched
    # The files still bind it at the next boot, and the initramfs carries them.
    assert "options vfio-pci ids=10de:1aef,10de:2204" in sim.host.read(VFIO_FILE)
    assert sim.host.tool_calls("update-initramfs") == [["-u", "-k", "all"]]
    records = sim.host.root / STATE_DIR.lstrip("/") / "bound"
    assert {p.name: p.read_text() for p in records.iterdir()} == {"0000:01:00.0": "nouveau\n", "0000:01:00.1": "snd_hda_intel\n"}
    assert any("iommu=pt is written to the boot configuration" in n for n in result.plan.notes)
    assert_converged(sim, CARD)


def test_iommu_off_reboots_once_and_binds_at_boot(make_sim):
    sim = make_sim(SimSpec(cpu="intel", kernel="6.5.13-5-pve", devices=t4()))
    _, plan = sim.engine(T4_SPEC).plan()
    assert plan.reboot and not plan.rebinds and plan.reboot_reason.startswith("the IOMMU is not active yet: intel_iommu=on turns it on")
    result = sim.engine(T4_SPEC).apply()
    assert result.rebooted and sim.host.tool_calls("reboot") == [[]] and result.restarts["host_reboots"] == 1
    assert sim.host.driver(T4) == "vfio-pci" and sysfs_writes(sim) == []  # bound by the boot, not live
    assert override(sim, T4) == "(null)"
    assert_converged(sim, T4_SPEC)


def test_a_boot_vga_gpu_is_not_unbound_live_and_the_plan_says_why(make_sim):
    card = consumer_card()
    card[0] = SimDevice(card[0].address, card[0].vendor_device, card[0].class_code, card[0].subsystem, card[0].driver, card[0].group, boot_vga=True)
    sim = make_sim(SimSpec(cpu="amd", kernel=K68, devices=card))
    _, plan = sim.engine(CARD).plan()
    assert plan.reboot and not plan.rebinds  # not even the audio function: half a card helps no VM
    assert "0000:01:00.0 is the host's boot VGA device (sysfs boot_vga = 1)" in plan.reboot_reason
    assert "reboot: 0000:01:00.0 is the host's boot VGA device" in plan.render()
    result = sim.engine(CARD).apply()
    assert result.rebooted and sysfs_writes(sim) == [] and sim.host.driver("0000:01:00.0") == "vfio-pci"
    assert sim.host.driver("0000:01:00.1") == "vfio-pci"


def test_nvidia_in_use_is_not_unbound_live_then_binds_live_once_released(make_sim):
    sim = make_sim(SimSpec(cpu="amd", kernel=K68, devices=[SimDevice(T4, "10de:1eb8", "0x030200", "10de:12a2", "nvidia", 30)]))
    sim.host.hold(2210, "nvidia-persistenced", "/dev/nvidia0")
    facts, plan = sim.engine(T4_SPEC).plan()
    assert facts.holders == ((2210, "/dev/nvidia0", "nvidia-persistenced"),)
    assert plan.reboot and not plan.rebinds
    assert "driven by the nvidia driver and in use by nvidia-persistenced (pid 2210)" in plan.reboot_reason
    with pytest.raises(RebootRequiredError, match="nvidia-persistenced"):  # bounded: an unbind would wait (proxmox_sysfs.py)
        sim.engine(T4_SPEC, allow_reboot=False, options={"command_timeout": 15.0}).apply()
    assert sysfs_writes(sim) == [] and sim.host.driver(T4) == "nvidia"  # never unbound: the driver would wait forever
    sim.host.release(2210)  # the admin stops nvidia-persistenced
    result = sim.engine(T4_SPEC).apply()
    assert not result.rebooted and result.rebound == [f"{T4} nvidia -> vfio-pci"] and sim.host.driver(T4) == "vfio-pci"


def test_a_process_opening_the_gpu_after_the_facts_stops_the_live_bind(make_sim, monkeypatch):
    """The bind script checks the users again under the lock, right before the unbind."""
    from components.hostprep import steps as steps_module

    sim = make_sim(SimSpec(cpu="amd", kernel=K68, devices=[SimDevice(T4, "10de:1eb8", "0x030200", "10de:12a2", "nvidia", 30)]))
    real = steps_module.bind_script

    def late_user(*args, **kwargs):
        sim.host.hold(3300, "ffmpeg", "/dev/nvidia0")
        return real(*args, **kwargs)

    monkeypatch.setattr(steps_module, "bind_script", late_user)
    with pytest.raises(HostPrepError, match="opened /dev/nvidia\\* since the facts were read"):
        sim.engine(T4_SPEC, options={"command_timeout": 20.0}).apply()
    assert sim.host.driver(T4) == "nvidia" and not [c for c in sysfs_writes(sim) if "unbound" in c]


def test_undo_gives_live_bound_functions_back_to_their_drivers_without_a_reboot(make_sim):
    sim = make_sim(SimSpec(cpu="intel", kernel=K68, devices=consumer_card()))
    before = sim.host.snapshot()
    sim.engine(CARD).apply()
    result = sim.engine(CARD, reboot_on_destroy=True).undo()
    assert sim.host.snapshot() == before and not result.rebooted and sim.host.tool_calls("reboot") == []
    assert result.rebound == ["0000:01:00.0 vfio-pci -> nouveau", "0000:01:00.1 vfio-pci -> snd_hda_intel"]
    assert sim.host.driver("0000:01:00.0") == "nouveau" and sim.host.driver("0000:01:00.1") == "snd_hda_intel"
    assert override(sim, "0000:01:00.0") == "(null)" and override(sim, "0000:01:00.1") == "(null)"
    assert not list((sim.host.root / STATE_DIR.lstrip("/") / "bound").iterdir())
    assert not sim.engine(CARD).undo().plan.changes_host


def test_undo_leaves_a_gpu_a_vm_holds_on_vfio_pci_and_says_how_to_give_it_back(make_sim):
    sim = make_sim(SimSpec(cpu="amd", kernel=K68, devices=t4()))
    sim.engine(T4_SPEC).apply()
    sim.host.hold(4100, "kvm", "/dev/vfio/30")  # QEMU of the VM that passes the GPU through
    result = sim.engine(T4_SPEC).undo()
    assert sim.host.driver(T4) == "vfio-pci" and result.rebound == [] and not result.rebooted
    note = next(n for n in result.plan.notes if n.startswith(f"{T4} stays on vfio-pci"))
    assert "kvm (pid 4100) holds it" in note and f"echo nouveau > /sys/bus/pci/devices/{T4}/driver_override" in note
    assert not [c for c in sysfs_writes(sim) if c.get("unbound") == T4 and c.get("driver") == "vfio-pci"]
