"""The pure planner: each case a small fixture; a fresh host and an
already-applied host for each path, which together prove idempotence."""

from __future__ import annotations

import dataclasses

import pytest

from components.hostprep.cmdline import edit_grub, edit_kernel_cmdline, edit_tokens
from components.hostprep.facts import (
    BLACKLIST_FILE,
    ETC_MODULES,
    GRUB_DEFAULT,
    KERNEL_CMDLINE,
    MODULES_LOAD_FILE,
    VFIO_FILE,
    Guest,
    HostFacts,
    PciFunction,
)
from components.hostprep.hand_edits import hand_edits
from components.hostprep.inputs import GpuSpec, HostPrepInputs, PlanError
from components.hostprep.plan import plan_host, reboot_impact
from components.hostprep.results import written
from components.hostprep.undo import plan_undo, restore_cmdline
from components.hostprep.verify import verify_host
from components.hostprep.vfio_file import parse_blocks

OWNER = "proxmox-talos-gpu/homelab"
GRUB = 'GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR="Proxmox VE"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n'
ZFS_CMDLINE = "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n"
BRIDGE = PciFunction("0000:3a:00.0", "8086:6f08", "0x060400", None, "pcieport", 30, ("0000:3b:00.0",))
NIC = PciFunction("0000:05:00.0", "8086:1521", "0x020000", "15d9:1521", "igb", 5)


def t4(driver: str | None = "nouveau", group: int | None = 30, members: tuple[str, ...] = ("0000:3a:00.0",)) -> PciFunction:
    return PciFunction("0000:3b:00.0", "10de:1eb8", "0x030200", "10de:12a2", driver, group, members if group is not None else ())


def host(*, cpu: str = "intel", kernel: str = "6.5.13-5-pve", bootloader: str = "grub-bios", cmdline: str = "BOOT_IMAGE=/boot/vmlinuz ro quiet",
         iommu: bool = False, gpu: list[PciFunction] | None = None, others: list[PciFunction] | None = None,
         files: dict[str, str | None] | None = None, **extra) -> HostFacts:
    functions = gpu if gpu is not None else [t4(group=30 if iommu else None)]
    devices = {fn.address: fn for fn in [*(others if others is not None else [NIC] + ([BRIDGE] if iommu else [])), *functions]}
    all_files: dict[str, str | None] = {GRUB_DEFAULT: GRUB, ETC_MODULES: "", KERNEL_CMDLINE: ZFS_CMDLINE if bootloader == "systemd-boot" else None}
    all_files.update(files or {})
    return HostFacts(cpu_vendor=cpu, kernel_release=kernel, bootloader=bootloader, cmdline=cmdline, iommu_active=iommu,
                     functions={fn.address: fn for fn in functions}, files=all_files, devices=devices,
                     boot_tool_managed=bootloader == "systemd-boot", bootloader_evidence="test", boot_id="boot-1", **extra)


T4_INPUTS = HostPrepInputs(gpus=(GpuSpec("0000:3b:00.0", "10de:1eb8", "10de:12a2", None, 0),))


def booted(facts: HostFacts, plan) -> HostFacts:
    """What the host looks like once the plan is written and the host rebooted."""
    after = written(facts, plan)
    group = 30
    functions = {a: dataclasses.replace(fn, driver="vfio-pci", iommu_group=group) for a, fn in after.functions.items()}
    return dataclasses.replace(after, cmdline=f"{facts.cmdline} {' '.join(plan.wanted_cmdline)}".strip(), iommu_active=True,
                               functions=functions, devices={**after.devices, **functions}, boot_id="boot-2")


# -- kernel command line editing ---------------------------------------------------


@pytest.mark.parametrize(("value", "wanted", "expected"), [
    ("quiet", ["intel_iommu=on", "iommu=pt"], "quiet intel_iommu=on iommu=pt"),
    ("quiet intel_iommu=off splash", ["intel_iommu=on"], "quiet intel_iommu=on splash"),
    ("quiet iommu=pt intel_iommu=on", ["intel_iommu=on", "iommu=pt"], "quiet iommu=pt intel_iommu=on"),
    ("iommu=soft quiet iommu=pt", ["iommu=pt"], "iommu=pt quiet"),
    ("", [], ""),
])
def test_edit_tokens_adds_or_replaces_only_its_keys(value, wanted, expected):
    assert edit_tokens(value, wanted) == expected


def test_edit_grub_changes_only_the_effective_default_line():
    content = '# GRUB_CMDLINE_LINUX_DEFAULT="old"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX_DEFAULT=\'quiet splash\'\nGRUB_TIMEOUT=5\n'
    edited = edit_grub(content, ["iommu=pt"])
    assert edited == '# GRUB_CMDLINE_LINUX_DEFAULT="old"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX_DEFAULT=\'quiet splash iommu=pt\'\nGRUB_TIMEOUT=5\n'


def test_edit_grub_appends_a_line_when_there_is_none_and_keeps_crlf():
    assert edit_grub("GRUB_TIMEOUT=5", ["iommu=pt"]) == 'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="iommu=pt"\n'
    assert edit_grub('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\r\n', ["iommu=pt"]) == 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\r\n'


@pytest.mark.parametrize("line", ['GRUB_CMDLINE_LINUX_DEFAULT="$(cat /etc/extra) quiet"', "GRUB_CMDLINE_LINUX_DEFAULT=`cat /x`",
                                  'GRUB_CMDLINE_LINUX_DEFAULT="quiet"; echo', 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"x',
                                  'GRUB_CMDLINE_LINUX_DEFAULT="$OTHER quiet"', "GRUB_CMDLINE_LINUX_DEFAULT+=\" iommu=pt\""])
def test_edit_grub_refuses_shell_it_cannot_rewrite_naming_the_line(line):
    with pytest.raises(PlanError, match=r"/etc/default/grub line 2 \("):
        edit_grub(f"GRUB_TIMEOUT=5\n{line}\n", ["iommu=pt"])


def test_edit_grub_refuses_a_value_that_is_only_extended():
    with pytest.raises(PlanError, match="only extended"):
        edit_grub('GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT quiet"\n', ["iommu=pt"])


def test_edit_grub_keeps_a_trailing_comment_after_the_quoted_value():
    content = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet" # admin: keep quiet\nGRUB_TIMEOUT=5\n'
    assert edit_grub(content, ["iommu=pt"]) == 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt" # admin: keep quiet\nGRUB_TIMEOUT=5\n'
    assert edit_grub("GRUB_CMDLINE_LINUX_DEFAULT=quiet   # unquoted\n", ["iommu=pt"]) == 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"   # unquoted\n'


def test_edit_kernel_cmdline_keeps_one_line_and_refuses_two():
    assert edit_kernel_cmdline(ZFS_CMDLINE, ["iommu=pt"]) == "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt\n"
    assert edit_kernel_cmdline("root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt", ["iommu=pt"]) == "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt"
    with pytest.raises(PlanError, match="exactly one line"):
        edit_kernel_cmdline("root=a\nquiet\n", ["iommu=pt"])


# -- fresh and applied hosts ----------------------------------------------------------


def test_grub_intel_kernel_6_5_fresh_host_plans_everything():
    facts = host()
    plan = plan_host(T4_INPUTS, facts, OWNER)
    assert not plan.refused
    changed = {c.path: c for c in plan.files}
    assert set(changed) == {BLACKLIST_FILE, MODULES_LOAD_FILE, VFIO_FILE, GRUB_DEFAULT}
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"' in changed[GRUB_DEFAULT].after
    assert "vfio_virqfd" not in changed[MODULES_LOAD_FILE].after  # 6.5 >= 6.2
    assert "options vfio-pci ids=10de:1eb8\n" in changed[VFIO_FILE].after
    assert [c.argv for c in plan.commands] == [("update-initramfs", "-u", "-k", "all"), ("update-grub",)]
    assert plan.reboot and plan.check_isolation_after_boot  # IOMMU comes on with the reboot
    assert all(c.reason for c in plan.files + plan.commands)
    assert "+GRUB_CMDLINE_LINUX_DEFAULT=\"quiet intel_iommu=on iommu=pt\"" in changed[GRUB_DEFAULT].diff()


def test_grub_intel_kernel_6_5_applied_host_is_a_noop_with_reasons():
    facts = host()
    after = booted(facts, plan_host(T4_INPUTS, facts, OWNER))
    plan = plan_host(T4_INPUTS, after, OWNER)
    assert plan.is_noop, plan.render()
    assert any("no reboot" in line for line in plan.noops)
    assert any("no initramfs or bootloader refresh" in line for line in plan.noops)
    assert verify_host(T4_INPUTS, after, OWNER).ok


def test_systemd_boot_amd_kernel_6_8_edits_kernel_cmdline_without_intel_iommu():
    facts = host(cpu="amd", kernel="6.8.12-4-pve", bootloader="systemd-boot", iommu=True, gpu=[t4()],
                 cmdline="initrd=\\EFI\\proxmox\\initrd.img root=ZFS=rpool/ROOT/pve-1 boot=zfs")
    plan = plan_host(dataclasses.replace(T4_INPUTS, intel_iommu="on"), facts, OWNER)
    changed = {c.path: c for c in plan.files}
    assert changed[KERNEL_CMDLINE].after == "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt\n"
    assert GRUB_DEFAULT not in changed
    assert "intel_iommu" not in " ".join(c.after or "" for c in plan.files)
    assert [c.name for c in plan.commands] == ["update-initramfs", "proxmox-boot-tool-refresh"]
    assert any("never added on AMD" in note for note in plan.notes)
    assert plan_host(T4_INPUTS, booted(facts, plan), OWNER).is_noop


def test_intel_kernel_6_8_needs_no_intel_iommu_unless_asked():
    facts = host(kernel="6.8.12-4-pve", iommu=True, gpu=[t4()])
    assert plan_host(T4_INPUTS, facts, OWNER).wanted_cmdline == ("iommu=pt",)
    assert plan_host(dataclasses.replace(T4_INPUTS, intel_iommu="on"), facts, OWNER).wanted_cmdline == ("intel_iommu=on", "iommu=pt")
    assert plan_host(dataclasses.replace(T4_INPUTS, iommu_passthrough=False), facts, OWNER).wanted_cmdline == ()


def test_old_kernel_still_loads_vfio_virqfd():
    plan = plan_host(T4_INPUTS, host(kernel="5.15.158-2-pve"), OWNER)
    modules = next(c.after for c in plan.files if c.path == MODULES_LOAD_FILE)
    assert modules.splitlines()[1:] == ["vfio", "vfio_iommu_type1", "vfio_pci", "vfio_virqfd"]


def test_consumer_card_binds_every_function_and_orders_the_audio_driver():
    gpu = [PciFunction("0000:01:00.0", "10de:2204", "0x030000", "1458:403b", "nouveau", 14, ("0000:01:00.1",)),
           PciFunction("0000:01:00.1", "10de:1aef", "0x040300", "1458:403b", "snd_hda_intel", 14, ("0000:01:00.0",))]
    facts = host(kernel="6.8.12-4-pve", iommu=True, gpu=gpu)
    plan = plan_host(HostPrepInputs(gpus=(GpuSpec("0000:01:00.0", "10de:2204", index=0),)), facts, OWNER)
    vfio = next(c.after for c in plan.files if c.path == VFIO_FILE)
    assert "options vfio-pci ids=10de:1aef,10de:2204\n" in vfio
    assert "softdep snd_hda_intel pre: vfio-pci\n" in vfio
    assert plan.functions == ("0000:01:00.0", "0000:01:00.1")


# -- refusals (nothing written) --------------------------------------------------------


def refused(plan) -> str:
    assert plan.refused and not plan.files and not plan.commands and not plan.reboot
    return "\n".join(str(r) for r in plan.refusals)


def test_plan_refuses_group_shared_with_nic():
    gpu = [t4(group=12, members=("0000:05:00.0",))]
    nic = dataclasses.replace(NIC, iommu_group=12, group_members=("0000:3b:00.0",))
    text = refused(plan_host(T4_INPUTS, host(kernel="6.8.12-4-pve", iommu=True, gpu=gpu, others=[nic]), OWNER))
    assert "proxmox-talos-gpu:gpus[0].address" in text and "0000:05:00.0 (Ethernet controller 8086:1521, driver igb)" in text


def test_plan_refuses_when_firmware_iommu_is_off():
    for facts in (host(cpu="amd", kernel="6.8.12-4-pve"), host(kernel="6.8.12-4-pve"), host(cmdline="ro quiet intel_iommu=on")):
        assert "off in the firmware" in refused(plan_host(T4_INPUTS, facts, OWNER))


def test_plan_refuses_a_second_same_model_gpu_left_with_the_host():
    other = dataclasses.replace(t4(), address="0000:af:00.0", iommu_group=None, group_members=())
    text = refused(plan_host(T4_INPUTS, host(others=[NIC, other]), OWNER))
    assert "gpus[0].id" in text and "0000:af:00.0 is the same model" in text


def test_plan_refuses_a_host_nvidia_device_the_blacklist_would_take():
    display = PciFunction("0000:af:00.0", "10de:1c82", "0x030000", "1043:85d2", "nvidia", None)
    assert "uses the proprietary driver nvidia" in refused(plan_host(T4_INPUTS, host(others=[NIC, display]), OWNER))


def test_plan_notes_a_host_nouveau_console_it_will_blacklist():
    console = PciFunction("0000:af:00.0", "10de:1c82", "0x030000", "1043:85d2", "nouveau", None)
    plan = plan_host(T4_INPUTS, host(others=[NIC, console]), OWNER)
    assert not plan.refused and any("loses driver nouveau" in note for note in plan.notes)


@pytest.mark.parametrize(("inputs", "key"), [
    (HostPrepInputs(gpus=(GpuSpec("0000:3c:00.0", index=0),)), "gpus[0].address"),
    (HostPrepInputs(gpus=(GpuSpec("0000:3b:00.0", "10de:1eb9", index=0),)), "gpus[0].id"),
    (HostPrepInputs(gpus=(GpuSpec("0000:3b:00.0", subsystem_id="10de:0000", index=0),)), "gpus[0].subsystemId"),
    (HostPrepInputs(gpus=(GpuSpec("0000:3b:00.0", iommu_group=7, index=0),)), "gpus[0].iommuGroup"),
])
def test_plan_names_the_config_key_that_does_not_match_the_host(inputs, key):
    facts = host(kernel="6.8.12-4-pve", iommu=True, gpu=[t4()])
    assert f"proxmox-talos-gpu:{key}" in refused(plan_host(inputs, facts, OWNER))


def test_plan_refuses_foreign_vfio_ids_and_systemd_boot_without_cmdline():
    facts = host(foreign_vfio_options=(("/etc/modprobe.d/vfio.conf", "options vfio-pci ids=10de:1eb8"),))
    assert "/etc/modprobe.d/vfio.conf" in refused(plan_host(T4_INPUTS, facts, OWNER))
    facts = host(cpu="amd", bootloader="systemd-boot", kernel="6.8.12-4-pve", iommu=True, gpu=[t4()], files={KERNEL_CMDLINE: None})
    assert "unbootable" in refused(plan_host(T4_INPUTS, facts, OWNER))


def test_plan_refuses_a_malformed_owner():
    with pytest.raises(PlanError):
        plan_host(T4_INPUTS, host(), "two words")


# -- interrupted runs ------------------------------------------------------------------------


def test_pending_commands_are_rerun_and_stale_temps_removed_even_when_files_match():
    facts = host()
    first = plan_host(T4_INPUTS, facts, OWNER)
    interrupted = dataclasses.replace(written(facts, first), pending=("update-initramfs", "update-grub"),
                                      stale_temps=("/etc/default/.grub.ptg-tmp-abc",))
    plan = plan_host(T4_INPUTS, interrupted, OWNER)
    assert not plan.files
    assert [c.name for c in plan.commands] == ["update-initramfs", "update-grub"]
    assert all("interrupted" in c.reason for c in plan.commands)
    assert plan.cleanup == ("/etc/default/.grub.ptg-tmp-abc",)


# -- several stacks on one host ----------------------------------------------------------------


A100 = PciFunction("0000:af:00.0", "10de:20b5", "0x030200", "10de:1533", "nouveau", 80)


def two_gpu_host() -> HostFacts:
    return host(kernel="6.8.12-4-pve", iommu=True, gpu=[t4(), A100], others=[NIC, BRIDGE])


def test_two_stacks_compose_one_ids_line_and_undo_only_their_block():
    inputs_b = HostPrepInputs(gpus=(GpuSpec("0000:af:00.0", index=0),))
    facts = two_gpu_host()
    plan_a = plan_host(T4_INPUTS, facts, "proxmox-talos-gpu/a")
    facts = written(facts, plan_a)
    plan_b = plan_host(inputs_b, facts, "proxmox-talos-gpu/b")
    assert [c.path for c in plan_b.files] == [VFIO_FILE]  # the shared files are already right
    facts = written(facts, plan_b)
    vfio = facts.files[VFIO_FILE]
    assert set(parse_blocks(vfio)) == {"proxmox-talos-gpu/a", "proxmox-talos-gpu/b"}
    assert vfio.count("options vfio-pci ids=") == 1 and "ids=10de:1eb8,10de:20b5\n" in vfio
    # b re-planned on its own: unchanged, it does not touch a's block.
    assert not plan_host(inputs_b, facts, "proxmox-talos-gpu/b").files
    undo_a = plan_undo(facts, "proxmox-talos-gpu/a")
    assert [c.path for c in undo_a.files] == [VFIO_FILE] and not undo_a.forget_originals
    facts = written(facts, undo_a)
    assert "ids=10de:20b5\n" in facts.files[VFIO_FILE] and "proxmox-talos-gpu/a" not in facts.files[VFIO_FILE]
    undo_b = plan_undo(facts, "proxmox-talos-gpu/b")
    restored = {c.path: c.after for c in undo_b.files}
    assert restored == {BLACKLIST_FILE: None, MODULES_LOAD_FILE: None, VFIO_FILE: None, GRUB_DEFAULT: GRUB}


def test_stack_refuses_a_gpu_another_stack_already_passes_through():
    facts = written(two_gpu_host(), plan_host(T4_INPUTS, two_gpu_host(), "proxmox-talos-gpu/a"))
    assert "already passed through by stack proxmox-talos-gpu/a" in refused(plan_host(T4_INPUTS, facts, "proxmox-talos-gpu/b"))


# -- undo -----------------------------------------------------------------------------------------


def test_undo_restores_originals_byte_for_byte_and_is_then_a_noop():
    facts = host()
    applied = written(facts, plan_host(T4_INPUTS, facts, OWNER))
    undo = plan_undo(applied, OWNER, reboot_on_destroy=False)
    after = {c.path: c.after for c in undo.files}
    assert after[GRUB_DEFAULT] == GRUB and after[VFIO_FILE] is None and after[BLACKLIST_FILE] is None
    assert [c.name for c in undo.commands] == ["update-initramfs", "update-grub"]
    assert not undo.reboot and set(undo.forget_originals) == {GRUB_DEFAULT, VFIO_FILE, BLACKLIST_FILE, MODULES_LOAD_FILE}
    again = plan_undo(written(applied, undo), OWNER)
    assert not again.changes_host and any("nothing to undo" in n for n in again.noops)


def test_undo_reboots_only_when_config_allows():
    booted = host(iommu=True, gpu=[t4(driver="vfio-pci")])  # prepared and rebooted: vfio-pci took it at boot
    applied = written(booted, plan_host(T4_INPUTS, booted, OWNER))
    assert plan_undo(applied, OWNER, reboot_on_destroy=True).reboot
    assert not plan_undo(applied, OWNER, reboot_on_destroy=True, allow_reboot=False).reboot


def test_undo_does_not_reboot_for_a_gpu_that_is_not_on_vfio_pci():
    """rebootOnDestroy gives the GPU back to the host; a GPU still on its host driver needs no reboot for that."""
    applied = written(host(), plan_host(T4_INPUTS, host(), OWNER))
    undo = plan_undo(applied, OWNER, reboot_on_destroy=True)
    assert undo.files and not undo.reboot


def test_undo_keeps_edits_made_by_others_since():
    original = GRUB
    ours = edit_grub(original, ["intel_iommu=on", "iommu=pt"])
    theirs = ours.replace("GRUB_TIMEOUT=5", "GRUB_TIMEOUT=3").replace("iommu=pt", "iommu=pt nomodeset")
    restore = restore_cmdline(GRUB_DEFAULT, theirs, original)
    assert "GRUB_TIMEOUT=3" in restore.content and 'GRUB_CMDLINE_LINUX_DEFAULT="quiet nomodeset"' in restore.content
    assert "only the parameters" in restore.reason and not restore.exact
    assert any("/var/lib/proxmox-talos-gpu/kept/etc/default/grub" in note for note in restore.notes)
    exact = restore_cmdline(GRUB_DEFAULT, ours, original)
    assert (exact.content, exact.reason, exact.exact) == (original, "restore the original, byte for byte", True)


def test_undo_puts_back_a_value_it_replaced():
    original = "root=ZFS=rpool/ROOT/pve-1 intel_iommu=off\n"
    ours = edit_kernel_cmdline(original, ["intel_iommu=on"])
    changed = ours.replace("root=", "quiet root=")
    assert restore_cmdline(KERNEL_CMDLINE, changed, original).content == "quiet root=ZFS=rpool/ROOT/pve-1 intel_iommu=off\n"


# -- verification ----------------------------------------------------------------------------------


def test_verify_reports_a_function_not_on_vfio_and_a_missing_parameter():
    facts = host()
    after = booted(facts, plan_host(T4_INPUTS, facts, OWNER))
    broken = dataclasses.replace(after, cmdline="ro quiet iommu=pt", functions={"0000:3b:00.0": t4(driver="nouveau")})
    report = verify_host(T4_INPUTS, broken, OWNER, booted=True)
    assert not report.ok
    assert any("bound to nouveau, not vfio-pci" in p for p in report.problems)
    assert any("lacks intel_iommu=on" in p for p in report.problems)


def test_verify_without_a_reboot_leaves_the_parameters_to_the_next_boot():
    """Bound live with the IOMMU on: iommu=pt waits in the boot configuration, which is no problem."""
    facts = host(kernel="6.8.12-4-pve", iommu=True)
    plan = plan_host(T4_INPUTS, facts, OWNER)
    live = dataclasses.replace(written(facts, plan), functions={"0000:3b:00.0": t4(driver="vfio-pci")})
    report = verify_host(T4_INPUTS, live, OWNER)
    assert report.ok and "iommu=pt: in the boot configuration, applies at the next boot" in report.checks
    assert not verify_host(T4_INPUTS, live, OWNER, booted=True).ok, "after a reboot the parameter must be running"


def test_verify_checks_isolation_after_the_first_boot():
    facts = host()
    after = booted(facts, plan_host(T4_INPUTS, facts, OWNER))
    shared_fn = dataclasses.replace(after.functions["0000:3b:00.0"], group_members=("0000:05:00.0",))
    shared = dataclasses.replace(after, functions={"0000:3b:00.0": shared_fn}, devices={**after.devices, "0000:3b:00.0": shared_fn})
    report = verify_host(T4_INPUTS, shared, OWNER)
    assert any("Move the card to another slot" in p and "run undo" in p for p in report.problems)


# -- guests a reboot stops ------------------------------------------------------------------------

OWN_VM = Guest(1105, "moody-good", "qemu", "running", True)
CP = Guest(101, "k8s-cp-1", "qemu", "running", True)
NAS = Guest(200, "nas", "lxc", "running", False)
OFF = Guest(300, "old", "qemu", "stopped", True)
MINE = dataclasses.replace(T4_INPUTS, own_vmids=(1105,), node_name="moody-good")


def test_reboot_impact_withholds_the_reboot_while_other_guests_run_and_names_them():
    impact = reboot_impact(MINE, host(guests=(OWN_VM, CP, NAS, OFF)))
    assert impact.stops == (OWN_VM, CP, NAS) and impact.own == (OWN_VM,) and impact.others == (CP, NAS)
    assert "101 k8s-cp-1 (qemu), 200 nas (lxc)" in impact.blocked and "`qm shutdown 101`, `pct shutdown 200`" in impact.blocked
    assert impact.drain_node == "moody-good"
    assert not reboot_impact(dataclasses.replace(MINE, running_guests="stop"), host(guests=(OWN_VM, CP))).blocked


def test_reboot_impact_of_only_this_stacks_vm_drains_and_goes_ahead():
    impact = reboot_impact(MINE, host(guests=(OWN_VM, OFF)))
    assert not impact.blocked and impact.drain_node == "moody-good" and impact.stops == (OWN_VM,)
    no_name = reboot_impact(dataclasses.replace(MINE, node_name=None), host(guests=(OWN_VM,)))
    assert no_name.drain_node is None and any("--node-name" in note for note in no_name.notes)
    no_onboot = reboot_impact(MINE, host(guests=(dataclasses.replace(OWN_VM, onboot=False),)))
    assert any("has no onboot: it stays off" in note for note in no_onboot.notes)


def test_reboot_impact_when_the_guests_cannot_be_read():
    unread = reboot_impact(MINE, host())
    assert not unread.guests_known and not unread.blocked  # read before rebooting
    failed = host(guests_problem="`pvesh get /cluster/resources --type vm` failed (rc=255): ipcc_send_rec[1] failed")
    assert "cannot tell which guests run" in reboot_impact(MINE, failed).blocked
    assert not reboot_impact(dataclasses.replace(MINE, running_guests="stop"), failed).blocked


def test_plan_lists_what_the_reboot_stops():
    text = plan_host(MINE, host(guests=(OWN_VM, NAS)), OWNER).render()
    assert "  - 1105 moody-good (qemu), onboot, this stack's VM" in text and "  - 200 nas (lxc), no onboot: stays off" in text
    assert "reboot withheld (host.runningGuests: refuse)" in text
    converged = booted(host(guests=(OWN_VM, NAS)), plan_host(MINE, host(), OWNER))
    assert plan_host(MINE, converged, OWNER).impact is None  # no reboot, nothing stopped


# -- hand edits -------------------------------------------------------------------------------------


def test_hand_edits_against_the_record_and_without_one():
    facts = written(host(), plan_host(T4_INPUTS, host(), OWNER))
    assert hand_edits(BLACKLIST_FILE, facts) == []
    edited = dataclasses.replace(facts, files={**facts.files, BLACKLIST_FILE: facts.files[BLACKLIST_FILE].replace("blacklist nvidiafb\n", "blacklist radeon\n")})
    assert hand_edits(BLACKLIST_FILE, edited) == ["+blacklist radeon", "-blacklist nvidiafb"]
    legacy = dataclasses.replace(edited, written={})  # prepared before records were kept: lines it never writes
    assert hand_edits(BLACKLIST_FILE, legacy) == ["+blacklist radeon"]
    refusal = "\n".join(str(r) for r in plan_host(T4_INPUTS, edited, OWNER).refusals)
    assert "was edited by hand" in refusal and "`+blacklist radeon`" in refusal and "host.handEdits: overwrite" in refusal


def test_a_run_interrupted_between_record_and_file_is_not_a_hand_edit():
    facts = written(host(), plan_host(T4_INPUTS, host(), OWNER))
    old = facts.files[VFIO_FILE]
    interrupted = dataclasses.replace(facts, written={**facts.written, VFIO_FILE: old.replace("ids=10de:1eb8", "ids=10de:1eb8,10de:20b5"),
                                                      VFIO_FILE + ".prev": old})
    assert hand_edits(VFIO_FILE, interrupted) == []
