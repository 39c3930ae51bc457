"""Faults on the way, each against the simulated host: a reboot that fails
or never starts, a hanging refresh, a lock left by a dead run, hand edits,
undo of odd command lines, GRUB files the old parser got wrong, junk facts,
a full disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from components.hostprep.errors import HostPrepError, RebootFailedError, RefusedError
from components.hostprep.facts import BLACKLIST_FILE, GRUB_DEFAULT, KERNEL_CMDLINE, MODULES_LOAD_FILE, STATE_DIR, VFIO_FILE, FactsError
from components.hostprep.inputs import GpuSpec
from tests.stand_ins.proxmox_host_spec import GRUB_DEFAULT as SIM_GRUB
from tests.stand_ins.proxmox_host_spec import SimSpec, t4

pytestmark = pytest.mark.sshd

REPO = Path(__file__).resolve().parents[2]
T4 = "0000:3b:00.0"
T4_SPEC = (GpuSpec(T4, "10de:1eb8", "10de:12a2", None, 0),)


def state(sim, *parts: str) -> Path:
    return sim.host.root / STATE_DIR.lstrip("/") / Path(*parts)


def assert_untouched(sim, before) -> None:
    assert sim.host.snapshot() == before
    assert sim.host.tool_calls("reboot") == [] and not (sim.host.root / "var").exists()


# -- the reboot ----------------------------------------------------------------------------


def test_reboot_that_fails_is_reported_at_once_with_its_exit_code_and_stderr(make_sim):
    sim = make_sim(SimSpec(devices=t4(), reboot_mode="fail"))
    started = time.monotonic()
    with pytest.raises(RebootFailedError) as error:
        sim.engine(T4_SPEC, reboot_timeout=600.0).apply()
    assert time.monotonic() - started < 15
    assert "`reboot` failed on the host (exit 1): Failed to connect to bus: No such file or directory" in str(error.value)
    assert "did not come back" not in str(error.value)


@pytest.mark.parametrize(("mode", "said"), [("killed", "killed by a signal"), ("noop", "nothing")])
def test_reboot_that_never_starts_is_reported_after_the_grace_period(make_sim, mode, said):
    sim = make_sim(SimSpec(devices=t4(), reboot_mode=mode))
    boot_id = sim.host.boot_id()
    started = time.monotonic()
    with pytest.raises(RebootFailedError) as error:
        sim.engine(T4_SPEC, reboot_timeout=40.0, options={"reboot_start_grace": 1.5}).apply()
    assert time.monotonic() - started < 20  # not the 600 s reboot timeout
    message = str(error.value)
    assert "the reboot never started" in message and "boot id unchanged" in message and "'running'" in message
    assert f"`reboot` said: {said}" in message or said in message
    assert sim.host.boot_id() == boot_id


def test_slow_shutdown_is_not_mistaken_for_a_reboot_that_never_started(make_sim):
    """Guests take a while to shut down while sshd still answers (systemd: "stopping")."""
    from tests.stand_ins.proxmox_host_spec import SimGuest

    sim = make_sim(SimSpec(devices=t4(), guests=[SimGuest(101, "slow")], guest_stop_seconds=2.5))
    result = sim.engine(T4_SPEC, running_guests="stop", options={"reboot_start_grace": 0.5}).apply()
    assert result.rebooted and sim.host.driver(T4) == "vfio-pci"


# -- a hanging host command ----------------------------------------------------------------


def test_hanging_refresh_is_bounded_shown_and_stopped_on_the_host_then_rerun_converges(make_sim):
    sim = make_sim(SimSpec(devices=t4(), hang_on={"update-initramfs": 1}))
    progress: list[str] = []
    started = time.monotonic()
    with pytest.raises(HostPrepError) as error:
        sim.engine(T4_SPEC, progress=progress, options={"command_timeout": 2.0}).apply()
    assert time.monotonic() - started < 30
    message = str(error.value)
    assert "`update-initramfs -u -k all` did not finish within 2 s (host.commandTimeoutSeconds, CLI --command-timeout)" in message
    assert "it was stopped on the host" in message and "stays marked pending" in message
    assert any("update-initramfs -u -k all` still running" in line for line in progress)
    assert any("at most 2 s" in line for line in progress)
    assert sim.host.processes("update-initramfs") == []  # killed on the host, not orphaned
    hung, stopped = (next(c["time"] for c in sim.host.calls() if c.get(key)) for key in ("hanging", "terminated"))
    assert stopped - hung < 4.5  # by the client at 2 s, not by the host's own bound (2 + 5 s)
    assert state(sim, "pending", "update-initramfs").exists()
    result = sim.engine(T4_SPEC, options={"lock_timeout": 3.0}).apply()  # the lock is free again
    assert result.ran == ["update-initramfs -u -k all", "update-grub"] and result.rebooted and sim.host.driver(T4) == "vfio-pci"


def test_lock_held_by_a_dead_run_is_recognised_and_released(make_sim, tmp_path):
    """The client dies while its update-initramfs hangs on the host: the orphan
    keeps the lock; the next run sees the holder's SSH session is gone."""
    sim = make_sim(SimSpec(devices=t4(), hang_on={"update-initramfs": 1}))
    identity = tmp_path / "id"
    identity.write_text(sim.target.private_key)
    identity.chmod(0o600)
    hosts = tmp_path / "known_hosts"
    hosts.write_text(sim.target.host_key + "\n")
    client = subprocess.Popen([sys.executable, "-m", "components.hostprep", "apply", "--host", "127.0.0.1", "--port", str(sim.target.port),
                               "--user", sim.target.user, "--identity", str(identity), "--known-hosts", str(hosts), "--gpu", T4,
                               "--root", sim.root, "--command-timeout", "600"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if sim.host.processes("update-initramfs"):
                break
            time.sleep(0.1)
        assert sim.host.processes("update-initramfs"), "the hanging update-initramfs never started"
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait()
    time.sleep(0.5)
    assert sim.host.processes("update-initramfs")  # orphaned on the host, holding the lock
    sim.host.update_spec(hang_on={})
    progress: list[str] = []
    started = time.monotonic()
    result = sim.engine(T4_SPEC, owner="proxmox-talos-gpu/cli", progress=progress, options={"lock_timeout": 60.0}).apply()
    assert time.monotonic() - started < 40  # not the lock timeout
    assert any("held by a run whose SSH session is gone (update-initramfs -u -k all" in line for line in progress), progress
    assert result.rebooted and sim.host.driver(T4) == "vfio-pci" and sim.host.processes("update-initramfs") == []


def test_lock_held_by_a_live_run_is_named_and_waited_for_only_so_long(make_sim):
    sim = make_sim(SimSpec(devices=t4()))
    state(sim).mkdir(parents=True)
    lock = subprocess.Popen(["flock", str(state(sim, "lock")), "sleep", "30"])
    # Its owner record names a session that is still there (this test process).
    state(sim, "lock.owner").write_text(f"{lock.pid} {os.getpid()} 0 update-grub\n")
    try:
        time.sleep(0.3)
        started = time.monotonic()
        with pytest.raises(HostPrepError, match=r"nothing was written: another run holds .*/lock \(update-grub, pid \d+, still connected\)"):
            sim.engine(T4_SPEC, options={"lock_timeout": 1.0}).apply()
        assert time.monotonic() - started < 15 and lock.poll() is None  # a live holder is never stopped
    finally:
        lock.kill()
        lock.wait()


# -- hand edits --------------------------------------------------------------------------


HAND_EDITS = {
    BLACKLIST_FILE: "blacklist radeon\n",
    VFIO_FILE: "options vfio-pci disable_vga=1\n",
    MODULES_LOAD_FILE: "kvmgt\n",
}


@pytest.mark.parametrize("path", sorted(HAND_EDITS))
def test_hand_edit_to_a_file_it_wrote_is_refused_by_apply_and_undo_naming_the_line(make_sim, path):
    sim = make_sim(SimSpec(cpu="amd", kernel="6.8.12-4-pve", devices=t4()))
    sim.engine(T4_SPEC).apply()
    sim.host.write(path, sim.host.read(path) + HAND_EDITS[path])
    before = sim.host.snapshot()
    for run in (sim.engine(T4_SPEC).apply, sim.engine(T4_SPEC).undo):
        with pytest.raises(RefusedError) as error:
            run()
        message = str(error.value)
        assert path in message and f"`+{HAND_EDITS[path].strip()}`" in message and "host.handEdits: overwrite" in message
        assert "Nothing was written" in message and sim.host.snapshot() == before


def test_hand_edit_is_replaced_only_when_overwrite_is_asked_and_the_plan_says_which_lines(make_sim):
    sim = make_sim(SimSpec(cpu="amd", kernel="6.8.12-4-pve", devices=t4()))
    before = sim.host.snapshot()
    sim.engine(T4_SPEC).apply()
    sim.host.write(BLACKLIST_FILE, sim.host.read(BLACKLIST_FILE).replace("blacklist nvidiafb\n", "blacklist radeon\n"))
    _, plan = sim.engine(T4_SPEC, hand_edits="overwrite").plan()
    change = next(c for c in plan.files if c.path == BLACKLIST_FILE)
    assert "replaces the hand edits (+blacklist radeon; -blacklist nvidiafb)" in change.reason
    sim.engine(T4_SPEC, hand_edits="overwrite").apply()
    assert "radeon" not in sim.host.read(BLACKLIST_FILE) and "blacklist nvidiafb" in sim.host.read(BLACKLIST_FILE)
    sim.engine(T4_SPEC).undo()
    assert sim.host.snapshot() == before


# -- undo of unusual command lines ----------------------------------------------------------


def test_undo_is_byte_exact_with_conflicting_duplicates_and_keeps_nothing_behind(make_sim):
    grub = SIM_GRUB.replace('GRUB_CMDLINE_LINUX_DEFAULT="quiet"', 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=off intel_iommu=on iommu=soft iommu=pt"')
    sim = make_sim(SimSpec(devices=t4(), files={GRUB_DEFAULT: grub}))
    before = sim.host.snapshot()
    sim.engine(T4_SPEC).apply()
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"' in sim.host.read(GRUB_DEFAULT)
    undo = sim.engine(T4_SPEC).undo()
    reasons = {c.path: c.reason for c in undo.plan.files}
    assert reasons[GRUB_DEFAULT] == "restore the original, byte for byte"
    assert sim.host.snapshot() == before
    assert not [p for p in state(sim, "originals").rglob("*") if p.is_file()] and not state(sim, "kept").exists()
    assert not [p for p in state(sim, "written").rglob("*") if p.is_file()]


def test_undo_keeps_a_parameter_the_user_extended_and_says_so(make_sim):
    sim = make_sim(SimSpec(devices=t4()))
    sim.engine(T4_SPEC).apply()
    sim.host.write(GRUB_DEFAULT, sim.host.read(GRUB_DEFAULT).replace("intel_iommu=on", "intel_iommu=on,sm_on"))
    undo = sim.engine(T4_SPEC).undo()
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on,sm_on"' in sim.host.read(GRUB_DEFAULT)
    change = next(c for c in undo.plan.files if c.path == GRUB_DEFAULT)
    assert "byte for byte" not in change.reason and "(iommu=pt)" in change.reason
    assert any("kept intel_iommu=on,sm_on: changed by hand" in note for note in undo.plan.notes)
    assert (state(sim, "kept") / GRUB_DEFAULT.lstrip("/")).read_text() == SIM_GRUB  # the original is not lost
    assert not sim.engine(T4_SPEC).undo().plan.changes_host  # and undo is then done


def test_undo_after_the_grub_line_was_deleted_by_hand_leaves_the_file_and_prints_json(make_sim, tmp_path):
    from tests.hostprep.test_cli import cli

    sim = make_sim(SimSpec(devices=t4()))
    assert cli(sim, tmp_path, "apply").returncode == 0
    edited = "".join(line for line in sim.host.read(GRUB_DEFAULT).splitlines(keepends=True) if not line.startswith("GRUB_CMDLINE_LINUX_DEFAULT="))
    sim.host.write(GRUB_DEFAULT, edited)
    done = cli(sim, tmp_path, "undo", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert any("no longer sets GRUB_CMDLINE_LINUX_DEFAULT" in note for note in result["plan"]["notes"])
    assert sim.host.read(GRUB_DEFAULT) == edited and "Traceback" not in done.stderr


# -- GRUB files --------------------------------------------------------------------------------


def test_trailing_comment_after_the_quoted_value_is_kept(make_sim):
    grub = SIM_GRUB.replace('GRUB_CMDLINE_LINUX_DEFAULT="quiet"', 'GRUB_CMDLINE_LINUX_DEFAULT="quiet" # admin: keep it quiet')
    sim = make_sim(SimSpec(devices=t4(), files={GRUB_DEFAULT: grub}))
    before = sim.host.snapshot()
    result = sim.engine(T4_SPEC).apply()
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt" # admin: keep it quiet\n' in sim.host.read(GRUB_DEFAULT)
    assert result.rebooted and "intel_iommu=on iommu=pt" in sim.host.cmdline()
    sim.engine(T4_SPEC).undo()
    assert sim.host.snapshot() == before


def test_grub_d_override_is_edited_where_it_decides_and_undone_byte_for_byte(make_sim):
    override = "/etc/default/grub.d/50-local.cfg"
    sim = make_sim(SimSpec(devices=t4(), files={override: 'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"\n',
                                                "/etc/default/grub.d/60-tail.cfg": 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT mitigations=auto"\n'}))
    before = sim.host.snapshot()
    result = sim.engine(T4_SPEC).apply()
    assert sim.host.read(GRUB_DEFAULT) == SIM_GRUB  # the file GRUB's value does not come from stays as it was
    assert sim.host.read(override) == 'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash intel_iommu=on iommu=pt"\n'
    assert result.rebooted and sim.host.tool_calls("reboot") == [[]] and sim.host.driver(T4) == "vfio-pci"
    assert "splash intel_iommu=on iommu=pt mitigations=auto" in sim.host.cmdline()
    again = sim.engine(T4_SPEC).apply()
    assert again.round_trips == 1 and not again.rebooted and not again.wrote
    sim.engine(T4_SPEC).undo()
    assert sim.host.snapshot() == before


def test_grub_d_file_that_adds_a_clashing_parameter_is_refused_naming_it(make_sim):
    sim = make_sim(SimSpec(devices=t4(), files={"/etc/default/grub.d/90-swiotlb.cfg": 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT iommu=soft"\n'}))
    before = sim.host.snapshot()
    with pytest.raises(RefusedError, match=r"/etc/default/grub.d/90-swiotlb.cfg line 1 adds iommu=soft"):
        sim.engine(T4_SPEC).apply()
    assert_untouched(sim, before)


def test_grub_host_whose_esps_proxmox_boot_tool_manages_refreshes_them(make_sim):
    sim = make_sim(SimSpec(cpu="intel", kernel="6.5.13-5-pve", bootloader="grub-uefi", boot_tool_managed=True, devices=t4()))
    result = sim.engine(T4_SPEC, iommu_passthrough=False).apply()
    assert result.plan.files and [c.name for c in result.plan.commands] == ["update-initramfs", "proxmox-boot-tool-refresh"]
    assert sim.host.tool_calls("update-grub") == [] and ["refresh"] in sim.host.tool_calls("proxmox-boot-tool")
    assert result.rebooted and sim.host.driver(T4) == "vfio-pci" and "intel_iommu=on" in sim.host.cmdline()
    # Only the command line changes now: the ESPs' copy must be refreshed, or the next boot boots the old one.
    # iommu=pt alone never forces a reboot: the IOMMU is on and the GPU bound, so it waits for the next boot.
    result = sim.engine(T4_SPEC).apply()
    assert [c.path for c in result.plan.files] == [GRUB_DEFAULT] and [c.name for c in result.plan.commands] == ["proxmox-boot-tool-refresh"]
    assert not result.rebooted and sim.host.tool_calls("reboot") == [[]] and "iommu=pt" not in sim.host.cmdline()
    # What boots next is the ESPs' copy; /boot/grub was never regenerated (update-grub never ran).
    assert "intel_iommu" not in (sim.host.boot_dir / "cmdline").read_text() and "iommu=pt" in (sim.host.boot_dir / "esp/cmdline").read_text()


def test_host_without_any_modprobe_conf_plans_normally(make_sim):
    sim = make_sim(SimSpec(devices=t4()))
    (sim.host.root / "etc/modprobe.d/pve-blacklist.conf").unlink()
    _, plan = sim.engine(T4_SPEC).plan()
    assert not plan.refused, plan.render()
    assert {c.path for c in plan.files} >= {BLACKLIST_FILE, VFIO_FILE}


# -- facts that do not look like facts ---------------------------------------------------------


@pytest.mark.parametrize(("file", "junk", "named"), [
    ("device", "0x1eb8\noptions vfio-pci ids=dead:beef\n", r"sysfs 0000:3b:00.0/device holds more than one line"),
    ("vendor", "0x10de; reboot\n", r"sysfs 0000:3b:00.0/vendor holds '0x10de; reboot', not 0x and 4 hex digits"),
    ("class", "0x0302\n", r"sysfs 0000:3b:00.0/class holds '0x0302', not 0x and 6 hex digits"),
    ("subsystem_device", "0x12a2\x00\n", r"subsystem_device holds '0x12a2\\\\x00'"),
])
def test_junk_in_sysfs_is_refused_before_any_write(make_sim, file, junk, named):
    sim = make_sim(SimSpec(devices=t4()))
    (sim.host.root / "sys/bus/pci/devices" / T4 / file).write_text(junk)
    before = sim.host.snapshot()
    with pytest.raises(FactsError, match=named):
        sim.engine(T4_SPEC).apply()
    assert_untouched(sim, before)


def test_non_numeric_iommu_group_is_refused(make_sim):
    sim = make_sim(SimSpec(cpu="amd", kernel="6.8.12-4-pve", devices=t4()))
    link = sim.host.root / "sys/bus/pci/devices" / T4 / "iommu_group"
    link.unlink()
    os.symlink("../../../kernel/iommu_groups/thirty", link)
    before = sim.host.snapshot()
    with pytest.raises(FactsError, match=r"0000:3b:00.0/iommu_group points to 'thirty', not a group number"):
        sim.engine(T4_SPEC).apply()
    assert_untouched(sim, before)


def test_missing_iommu_group_while_the_iommu_is_on_is_refused(make_sim):
    sim = make_sim(SimSpec(cpu="amd", kernel="6.8.12-4-pve", devices=t4()))
    (sim.host.root / "sys/bus/pci/devices" / T4 / "iommu_group").unlink()
    before = sim.host.snapshot()
    with pytest.raises(RefusedError, match=r"IOMMU group of 0000:3b:00.0 cannot be read"):
        sim.engine(T4_SPEC).apply()
    assert_untouched(sim, before)


@pytest.mark.parametrize("cpuinfo", [b"processor\t: 0\nvendor_id\t: Genuine\x00Intel\n", b"\x00\x01\x02binary\n",
                                     b"processor\t: 0\nvendor_id\t: \x1b[2JCentaurHauls\n"])
def test_cpuinfo_with_nul_or_control_bytes_is_refused_naming_cpuinfo(make_sim, cpuinfo):
    sim = make_sim(SimSpec(devices=t4()))
    (sim.host.root / "proc/cpuinfo").write_bytes(cpuinfo)
    before = sim.host.snapshot()
    with pytest.raises(FactsError) as error:
        sim.engine(T4_SPEC).apply()
    message = str(error.value)
    assert message.startswith("/proc/cpuinfo: vendor_id is") and "\x00" not in message and "\x1b" not in message
    assert "firmware" not in message
    assert_untouched(sim, before)


@pytest.mark.parametrize("probe", [{"efibootmgr": ["\x00garbage\nBootOrder: zz\n", 0]},
                                   {"proxmox-boot-tool": ["Re-executing...\nsomething went wrong\n", 0]},
                                   {"proxmox-boot-tool": ["E: /etc/kernel/proxmox-boot-uuids does not exist.\n", 2]}])
def test_unreadable_or_disagreeing_bootloader_evidence_is_refused(make_sim, probe):
    sim = make_sim(SimSpec(cpu="amd", kernel="6.8.12-4-pve", bootloader="systemd-boot", devices=t4(), probe_output=probe))
    before = sim.host.snapshot()
    with pytest.raises(RefusedError, match="cannot tell how this host boots"):
        sim.engine(T4_SPEC).apply()
    assert_untouched(sim, before)
    assert sim.host.read(KERNEL_CMDLINE) == "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n"


# -- a full disk -----------------------------------------------------------------------------


def test_full_disk_names_the_file_and_the_free_space_and_leaves_no_half_file(make_sim):
    sim = make_sim(SimSpec(devices=t4(), enospc="/etc/modprobe.d/.proxmox-talos-gpu-vfio.conf.ptg-tmp"))
    with pytest.raises(HostPrepError) as error:
        sim.engine(T4_SPEC).apply()
    message = str(error.value)
    assert f"cannot write {sim.root}{VFIO_FILE}" in message and "KiB free on" in message and "half" in message
    assert "base64: write error" not in message.split("cannot write")[0]
    assert sim.host.read(VFIO_FILE) is None and sim.host.temp_files() == []
    assert sim.host.tool_calls("reboot") == []
    (sim.host.base / "enospc").write_text("")
    result = sim.engine(T4_SPEC).apply()
    assert result.rebooted and sim.host.driver(T4) == "vfio-pci"
