"""Scenarios against a real OpenSSH server serving a simulated Proxmox host."""

from __future__ import annotations

import base64
import dataclasses
import time

import pytest

from components.hostprep.errors import HostPrepError, HostTimeoutError, RebootRequiredError, RefusedError
from components.hostprep.facts import GRUB_DEFAULT, KERNEL_CMDLINE, MODULES_LOAD_FILE, VFIO_FILE
from components.hostprep.inputs import GpuSpec
from components.ssh.errors import HostKeyError, TransportError
from components.ssh.keys import fingerprint
from components.ssh.transport import SshTransport
from tests.stand_ins.proxmox_host_spec import GRUB_DEFAULT as SIM_GRUB
from tests.stand_ins.proxmox_host_spec import SimDevice, SimSpec, consumer_card, t4

pytestmark = pytest.mark.sshd

T4 = "0000:3b:00.0"
T4_SPEC = (GpuSpec(T4, "10de:1eb8", "10de:12a2", None, 0),)


def assert_converged(sim, gpus, **inputs) -> None:
    """A second run: one round trip, nothing written, no reboot."""
    before, boot_id, calls = sim.host.snapshot(), sim.host.boot_id(), len(sim.host.calls())
    again = sim.engine(gpus, **inputs).apply()
    assert again.round_trips == 1 and not again.wrote and not again.ran and not again.rebooted
    assert sim.host.snapshot() == before and sim.host.boot_id() == boot_id
    assert [c["tool"] for c in sim.host.calls()[calls:]] == ["proxmox-boot-tool", "efibootmgr"]  # the facts' read-only probes


def test_grub_intel_kernel_6_5_prepares_reboots_and_verifies(make_sim):
    sim = make_sim(SimSpec(cpu="intel", kernel="6.5.13-5-pve", bootloader="grub-bios", devices=t4()))
    progress: list[str] = []
    result = sim.engine(T4_SPEC, progress=progress).apply()
    assert result.rebooted and sim.host.driver(T4) == "vfio-pci"
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"' in sim.host.read(GRUB_DEFAULT)
    assert "intel_iommu=on iommu=pt" in sim.host.cmdline()
    assert sim.host.read(MODULES_LOAD_FILE).split("\n")[1:4] == ["vfio", "vfio_iommu_type1", "vfio_pci"]
    assert "vfio_virqfd" not in sim.host.read(MODULES_LOAD_FILE)
    assert (sim.host.boot_dir / "dmesg").read_text() == ""  # no "Failed to find module"
    assert sim.host.tool_calls("update-initramfs") == [["-u", "-k", "all"]] and sim.host.tool_calls("update-grub") == [[]]
    assert sim.host.tool_calls("reboot") == [[]]
    assert result.outputs([T4]) == {"drivers": {T4: "vfio-pci"}, "iommu_groups": {T4: 30}, "subsystem_ids": {T4: "10de:12a2"}, "rebooted": True,
                                    "restarts": {"host_reboots": 1, "guests_stopped": [], "own_vms_stopped": [], "ha_guests": [],
                                                 "node": None, "drained_first": None}}
    assert any("waiting for the host to come back" in line for line in progress) and any("is back" in line for line in progress)
    assert_converged(sim, T4_SPEC)


def test_systemd_boot_amd_kernel_6_8_uses_kernel_cmdline_and_boot_tool(make_sim):
    sim = make_sim(SimSpec(cpu="amd", kernel="6.8.12-4-pve", bootloader="systemd-boot", devices=t4()))
    result = sim.engine(T4_SPEC, intel_iommu="on").apply()
    assert sim.host.read(KERNEL_CMDLINE) == "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt\n"
    assert sim.host.tool_calls("update-grub") == []
    assert sim.host.tool_calls("proxmox-boot-tool").count(["refresh"]) == 1
    # The IOMMU is on (AMD): bound live, iommu=pt waits for the next boot.
    assert not result.rebooted and sim.host.tool_calls("reboot") == [] and sim.host.driver(T4) == "vfio-pci"
    assert "iommu=pt" not in sim.host.cmdline() and "iommu=pt" in (sim.host.boot_dir / "esp/cmdline").read_text()
    assert sim.host.read(GRUB_DEFAULT) == SIM_GRUB  # untouched: GRUB is not in use
    assert_converged(sim, T4_SPEC, intel_iommu="on")


def test_consumer_card_audio_function_is_bound_too(make_sim):
    sim = make_sim(SimSpec(cpu="intel", kernel="6.8.12-4-pve", devices=consumer_card()))
    gpus = (GpuSpec("0000:01:00.0", "10de:2204", index=0),)
    result = sim.engine(gpus).apply()
    assert "options vfio-pci ids=10de:1aef,10de:2204\n" in sim.host.read(VFIO_FILE)
    assert "softdep snd_hda_intel pre: vfio-pci" in sim.host.read(VFIO_FILE)
    assert sim.host.driver("0000:01:00.0") == "vfio-pci" and sim.host.driver("0000:01:00.1") == "vfio-pci"
    assert result.outputs([g.address for g in gpus])["drivers"] == {"0000:01:00.0": "vfio-pci", "0000:01:00.1": "vfio-pci"}
    assert "intel_iommu" not in sim.host.read(GRUB_DEFAULT)  # Intel from 6.8: on by default
    assert_converged(sim, gpus)


def test_iommu_group_shared_with_nic_is_refused_and_nothing_written(make_sim):
    devices = [SimDevice(T4, "10de:1eb8", "0x030200", "10de:12a2", "nouveau", 12), SimDevice("0000:3c:00.0", "8086:10fb", "0x020000", None, "ixgbe", 12)]
    sim = make_sim(SimSpec(cpu="intel", kernel="6.8.12-4-pve", devices=devices))
    before, calls = sim.host.snapshot(), len(sim.host.calls())
    with pytest.raises(RefusedError, match=r"IOMMU group 12 of 0000:3b:00.0 also holds 0000:3c:00.0 \(Ethernet controller 8086:10fb, driver ixgbe\)"):
        sim.engine([GpuSpec(T4, index=0)]).apply()
    assert sim.host.snapshot() == before
    # Only the read-only probes ran (the GPU is not on vfio-pci yet, so the guests were read too).
    assert [(c["tool"], c["args"]) for c in sim.host.calls()[calls:]] == [
        ("proxmox-boot-tool", ["status"]), ("efibootmgr", ["-v"]), ("pvesh", ["get", "/cluster/resources", "--type", "vm", "--output-format", "json"])]
    assert not (sim.host.root / "var").exists()


def test_shared_group_found_only_after_the_first_boot_fails_with_the_remedy(make_sim):
    """Intel before 6.8: groups are unreadable until the IOMMU is on."""
    devices = [SimDevice(T4, "10de:1eb8", "0x030200", "10de:12a2", "nouveau", 12), SimDevice("0000:3c:00.0", "8086:1521", "0x020000", None, "igb", 12)]
    sim = make_sim(SimSpec(cpu="intel", kernel="6.5.13-5-pve", devices=devices))
    with pytest.raises(HostPrepError, match="also holds 0000:3c:00.0.*run undo"):
        sim.engine([T4]).apply()
    assert sim.host.tool_calls("reboot") == [[]]


def test_firmware_iommu_off_is_refused_before_writing(make_sim):
    sim = make_sim(SimSpec(cpu="amd", kernel="6.8.12-4-pve", bootloader="systemd-boot", iommu_firmware=False, devices=t4()))
    before = sim.host.snapshot()
    with pytest.raises(RefusedError, match="switched off in the firmware"):
        sim.engine([T4]).apply()
    assert sim.host.snapshot() == before


def test_connection_dropped_during_update_initramfs_then_rerun_converges(make_sim):
    sim = make_sim(SimSpec(devices=t4(), drop_on={"update-initramfs": 1}))
    with pytest.raises(TransportError, match="connection lost while running `update-initramfs"):
        sim.engine(T4_SPEC).apply()
    assert not sim.host.temp_files()
    pending = sorted(p.name for p in (sim.host.root / "var/lib/proxmox-talos-gpu/pending").iterdir())
    assert pending == ["update-grub", "update-initramfs"]
    result = sim.engine(T4_SPEC).apply()
    assert not result.wrote and result.ran == ["update-initramfs -u -k all", "update-grub"] and result.rebooted
    assert sim.host.driver(T4) == "vfio-pci"
    assert_converged(sim, T4_SPEC)


def test_connection_dropped_mid_write_leaves_no_half_file_and_rerun_converges(make_sim):
    sim = make_sim(SimSpec(devices=t4(), drop_on={"mv": 4}))
    before = sim.host.snapshot()
    _, plan = sim.engine(T4_SPEC).plan()
    with pytest.raises(TransportError):
        sim.engine(T4_SPEC).apply()
    states = []
    for change in plan.files:
        content = sim.host.read(change.path)
        original = before[change.path.lstrip("/")][0].decode() if change.path.lstrip("/") in before else None
        assert content in (original, change.after), f"{change.path} is neither the original nor the planned content"
        states.append(content == change.after)
    assert any(states) and not all(states)  # the drop came between two renames
    assert any(c.get("dropped") for c in sim.host.calls())
    assert sim.host.temp_files()  # the interrupted rename left its temp file
    sim.host.update_spec(drop_on={})
    result = sim.engine(T4_SPEC).apply()
    assert result.rebooted and sim.host.driver(T4) == "vfio-pci"
    assert not sim.host.temp_files()
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"' in sim.host.read(GRUB_DEFAULT)
    assert_converged(sim, T4_SPEC)


def test_host_that_never_comes_back_times_out_clearly(make_sim):
    sim = make_sim(SimSpec(devices=t4(), never_return=True))
    started = time.monotonic()
    with pytest.raises(HostTimeoutError, match=r"did not come back within 2 s after the reboot"):
        sim.engine(T4_SPEC, reboot_timeout=2.0).apply()
    assert time.monotonic() - started < 15


def test_wrong_host_key_is_refused_showing_the_offered_fingerprint(make_sim):
    sim = make_sim(SimSpec(devices=t4()))
    offered = fingerprint(base64.b64decode(sim.keys.host_public().split()[1]))
    kind, key = (sim.keys.host_dir / "other.pub").read_text().split()[:2]  # a valid ed25519 key, not this host's
    for pin in (f"[127.0.0.1]:{sim.target.port} {kind} {key}", "SHA256:" + "A" * 43):
        with pytest.raises(HostKeyError, match="host key not accepted") as error:
            SshTransport.connect(dataclasses.replace(sim.target, host_key=pin), timeout=5)
        assert offered in str(error.value)
    with pytest.raises(HostKeyError):
        sim.engine(T4_SPEC).__class__(lambda t: SshTransport.connect(dataclasses.replace(sim.target, host_key="SHA256:" + "A" * 43), timeout=t),
                                      sim.engine(T4_SPEC).inputs, "p/s").apply()
    assert sim.host.calls() == []  # nothing ran on the host
    assert "Accepted publickey" not in (sim.host.sshd_dir / "sshd.log").read_text()  # the key was never offered


def test_fingerprint_pin_of_a_non_default_key_type_is_found(make_sim):
    sim = make_sim(SimSpec(devices=t4()))
    rsa = fingerprint(base64.b64decode(sim.keys.host_public("rsa").split()[1]))
    target = dataclasses.replace(sim.target, host_key=rsa)
    with SshTransport.connect(target, timeout=5) as transport:
        assert transport.run("echo ok").stdout == "ok\n"


def test_undo_restores_every_file_byte_for_byte(make_sim):
    sim = make_sim(SimSpec(devices=t4()))
    before = sim.host.snapshot()
    sim.engine(T4_SPEC).apply()
    assert sim.host.snapshot() != before
    result = sim.engine(T4_SPEC, reboot_on_destroy=True).undo()
    assert sim.host.snapshot() == before  # bytes and modes
    assert result.rebooted and sim.host.driver(T4) == "nouveau" and "intel_iommu" not in sim.host.cmdline()
    assert not [p for p in (sim.host.root / "var/lib/proxmox-talos-gpu/originals").rglob("*") if p.is_file()]
    assert not sim.engine(T4_SPEC).undo().plan.changes_host


def test_two_stacks_share_a_host_and_undo_only_their_own_gpu(make_sim):
    a100 = [SimDevice("0000:af:00.0", "10de:20b5", "0x030200", "10de:1533", "nouveau", 80)]
    sim = make_sim(SimSpec(cpu="amd", kernel="6.8.12-4-pve", devices=t4() + a100))
    before = sim.host.snapshot()
    sim.engine([T4], owner="proxmox-talos-gpu/a").apply()
    sim.engine(["0000:af:00.0"], owner="proxmox-talos-gpu/b").apply()
    assert sim.host.driver(T4) == "vfio-pci" and sim.host.driver("0000:af:00.0") == "vfio-pci"
    assert sim.host.read(VFIO_FILE).count("options vfio-pci ids=") == 1
    undo = sim.engine([T4], owner="proxmox-talos-gpu/a", reboot_on_destroy=True).undo()
    # Both were bound live (AMD: the IOMMU is on), so undo gives stack a's GPU back live: no reboot needed.
    assert not undo.rebooted and undo.rebound == [f"{T4} vfio-pci -> nouveau"]
    assert sim.host.driver("0000:af:00.0") == "vfio-pci" and sim.host.driver(T4) == "nouveau"
    sim.engine(["0000:af:00.0"], owner="proxmox-talos-gpu/b").undo()
    assert sim.host.snapshot() == before and sim.host.driver("0000:af:00.0") == "nouveau"
    assert sim.host.tool_calls("reboot") == [] and not list((sim.host.root / "var/lib/proxmox-talos-gpu/bound").iterdir())


def test_no_reboot_allowed_writes_files_and_says_to_reboot(make_sim):
    sim = make_sim(SimSpec(devices=t4()))
    with pytest.raises(RebootRequiredError, match="allowReboot is false"):
        sim.engine(T4_SPEC, allow_reboot=False).apply()
    assert sim.host.tool_calls("reboot") == [] and sim.host.read(VFIO_FILE)
    assert not sim.engine(T4_SPEC, allow_reboot=False).plan()[1].files  # the rerun only still needs the reboot
