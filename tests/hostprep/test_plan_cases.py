"""The host planner case by case, as data: facts (and inputs) in, the whole
output out. Each plan is compared as it renders (every refusal, file, reason,
command, reboot line, no-op and note) and, for a fresh host, with the plan
of the same host once written and rebooted, which must be all no-ops."""

from __future__ import annotations

import dataclasses

import pytest

from components.config import parse_stack_config
from components.hostprep.cmdline import cmdline_file, edit_grub_files, edit_tokens, grub_cmdline, is_cmdline_file
from components.hostprep.facts import (
    BLACKLIST_FILE,
    GRUB_D,
    GRUB_DEFAULT,
    KERNEL_CMDLINE,
    MODULES_LOAD_FILE,
    VFIO_FILE,
    Guest,
    HostFacts,
    PciFunction,
)
from components.hostprep.hand_edits import hand_edits
from components.hostprep.inputs import GpuSpec, HostPrepInputs, PlanError, inputs_from_config
from components.hostprep.plan import plan_host, static_tokens
from components.hostprep.plan_model import FileChange, HostPlan
from components.hostprep.results import written
from components.hostprep.undo import plan_undo, restore_cmdline
from components.hostprep.verify import verify_host
from components.hostprep.vfio_file import Block, parse_blocks, render_vfio_file
from tests.conftest import stack_file_config
from tests.hostprep.test_plan import A100, BRIDGE, GRUB, NIC, OWNER, T4_INPUTS, ZFS_CMDLINE, booted, host, t4, two_gpu_host

K68 = "6.8.12-4-pve"
ACTIVE = {"kernel": K68, "iommu": True, "gpu": [t4()]}  # IOMMU on, the T4 alone in group 30 with its bridge
AMD_SYSTEMD = {"cpu": "amd", "kernel": K68, "bootloader": "systemd-boot", "iommu": True, "gpu": [t4()]}
AUDIO = PciFunction("0000:3b:00.1", "10de:10f8", "0x040300", "10de:12a2", "snd_hda_intel", 30, ("0000:3a:00.0",))
USB = PciFunction("0000:3b:00.2", "10de:1ad8", "0x0c0330", "10de:12a2", "xhci_hcd", 30, ("0000:3a:00.0",))
UCSI = PciFunction("0000:3b:00.3", "10de:1ad9", "0x0c8000", "10de:12a2", "nvidia-gpu", 30, ("0000:3a:00.0",))
CONSOLE = PciFunction("0000:af:00.0", "10de:1c82", "0x030000", "1043:85d2", "nouveau", None)
LONG_LINE = "install nouveau " + "/bin/true " * 9  # 106 characters: shown as its first 99 and "..."

BLACKLIST = "create /etc/modprobe.d/proxmox-talos-gpu-blacklist.conf: keep nouveau, nvidia, nvidia_drm, nvidia_modeset, nvidia_uvm, nvidiafb off the GPU so vfio-pci can claim it"
MODULES = "create /etc/modules-load.d/proxmox-talos-gpu-vfio.conf: load the VFIO modules at boot (vfio_virqfd is part of vfio from kernel 6.2; running {kernel})"
BIND_T4 = "create /etc/modprobe.d/proxmox-talos-gpu-vfio.conf: bind 10de:1eb8 to vfio-pci (every function of 0000:3b:00.0)"
INITRAMFS = ("run `update-initramfs -u -k all`: the initramfs loads vfio-pci early; /etc/modprobe.d/proxmox-talos-gpu-blacklist.conf, "
             "/etc/modprobe.d/proxmox-talos-gpu-vfio.conf, /etc/modules-load.d/proxmox-talos-gpu-vfio.conf changed")
UNREAD = "guests the reboot stops: not read yet (they are read before any reboot)"
PT = "iommu=pt because host.iommuPassthroughMode is true"
DEFER = ("note: IOMMU is not active yet: expected on Intel with kernel {kernel} without intel_iommu=on; this plan turns it on, "
         "and IOMMU group isolation is checked right after the reboot")
OK_SHARED = ["ok: /etc/modprobe.d/proxmox-talos-gpu-blacklist.conf already blacklists the host GPU drivers",
             "ok: /etc/modules-load.d/proxmox-talos-gpu-vfio.conf already loads the VFIO modules"]
OK_T4 = "ok: /etc/modprobe.d/proxmox-talos-gpu-vfio.conf already binds 10de:1eb8 to vfio-pci"
NO_REFRESH = "ok: no initramfs or bootloader refresh: none of their inputs changed"


def applied_ok(path: str, tokens: str, ids: str = "10de:1eb8") -> list[str]:
    """The plan of a prepared and rebooted host: every line a no-op."""
    return [*OK_SHARED, f"ok: /etc/modprobe.d/proxmox-talos-gpu-vfio.conf already binds {ids} to vfio-pci", f"ok: {path} already has {tokens}",
            NO_REFRESH, APPLIED_NOOP]


REBOOT_OFF = "reboot: the IOMMU is not active yet: intel_iommu=on turns it on only at boot, and vfio-pci needs it to take the GPU"
REBOOT_65 = [REBOOT_OFF, UNREAD]
APPLIED_NOOP = "ok: no reboot and no rebind: the IOMMU is on and every function is bound to vfio-pci"
LIVE_WHY = ("the IOMMU is on, so vfio-pci takes it without a reboot (driver_override, unbind, drivers_probe); "
            "the files bind it at every boot from now on")
LIVE_OK = "note: no host reboot: every function is bound to vfio-pci live and the written files do the same at the next boot"


def bind_live(*functions: str, address: str = "0000:3b:00.0") -> list[str]:
    """The rebind lines of a host whose IOMMU is on: one per function (address, driver)."""
    pairs = [f.split(" ", 1) for f in functions] or [[address, "nouveau"]]
    return [f"bind {a} to vfio-pci now ({d} -> vfio-pci): {LIVE_WHY}" for a, d in pairs]


def later(tokens: str) -> str:
    return (f"note: {tokens} is written to the boot configuration and applies at the next boot; "
            "the IOMMU is already on, so it does not need a reboot now")
WRITES_ON_ACTIVE_T4 = [BLACKLIST, MODULES.format(kernel=K68), BIND_T4, f"update /etc/default/grub: kernel command line (grub-bios): add iommu=pt; {PT}",
                       INITRAMFS, "run `update-grub`: grub-bios boot configuration: /etc/default/grub changed"]


def lines(plan: HostPlan) -> list[str]:
    return plan.render(diffs=False).splitlines()


# (case, inputs, facts, the plan on the fresh host, the plan once it is written and the host rebooted)
FRESH_AND_APPLIED = [
    ("GRUB, Intel, kernel 6.5: intel_iommu=on too", T4_INPUTS, lambda: host(), [
        BLACKLIST, MODULES.format(kernel="6.5.13-5-pve"), BIND_T4,
        "update /etc/default/grub: kernel command line (grub-bios): add intel_iommu=on iommu=pt; intel_iommu=on because Intel CPUs "
        f"need it before kernel 6.8 (running 6.5.13-5-pve); {PT}",
        INITRAMFS,
        "run `update-grub`: grub-bios boot configuration: /etc/default/grub changed",
        REBOOT_OFF,
        UNREAD, DEFER.format(kernel="6.5.13-5-pve"),
    ], [*OK_SHARED, OK_T4, "ok: /etc/default/grub already has intel_iommu=on iommu=pt", NO_REFRESH,
        APPLIED_NOOP]),
    ("GRUB, Intel, kernel 5.15: vfio_virqfd too", T4_INPUTS, lambda: host(kernel="5.15.158-2-pve"), [
        BLACKLIST,
        "create /etc/modules-load.d/proxmox-talos-gpu-vfio.conf: load the VFIO modules at boot (kernel older than 6.2 also needs vfio_virqfd; "
        "running 5.15.158-2-pve)",
        BIND_T4,
        "update /etc/default/grub: kernel command line (grub-bios): add intel_iommu=on iommu=pt; intel_iommu=on because Intel CPUs "
        f"need it before kernel 6.8 (running 5.15.158-2-pve); {PT}",
        INITRAMFS,
        "run `update-grub`: grub-bios boot configuration: /etc/default/grub changed",
        REBOOT_OFF,
        UNREAD, DEFER.format(kernel="5.15.158-2-pve"),
    ], [*OK_SHARED, OK_T4, "ok: /etc/default/grub already has intel_iommu=on iommu=pt", NO_REFRESH,
        APPLIED_NOOP]),
    ("GRUB, Intel, kernel 6.8 with intel_iommu=off: turned on", T4_INPUTS, lambda: host(kernel=K68, cmdline="ro quiet intel_iommu=off"), [
        BLACKLIST, MODULES.format(kernel=K68), BIND_T4,
        f"update /etc/default/grub: kernel command line (grub-bios): add intel_iommu=on iommu=pt; intel_iommu=on because the command line turns the IOMMU off; {PT}",
        INITRAMFS,
        "run `update-grub`: grub-bios boot configuration: /etc/default/grub changed",
        REBOOT_OFF,
        UNREAD, DEFER.format(kernel=K68),
    ], [*OK_SHARED, OK_T4, "ok: /etc/default/grub already has intel_iommu=on iommu=pt", NO_REFRESH,
        APPLIED_NOOP]),
    ("systemd-boot, AMD, host.intelIommu on: never intel_iommu on AMD", dataclasses.replace(T4_INPUTS, intel_iommu="on"),
     lambda: host(**AMD_SYSTEMD, cmdline="initrd=x root=ZFS=rpool/ROOT/pve-1 boot=zfs"), [
        BLACKLIST, MODULES.format(kernel=K68), BIND_T4,
        f"update /etc/kernel/cmdline: kernel command line (systemd-boot): add iommu=pt; {PT}",
        INITRAMFS,
        "run `proxmox-boot-tool refresh`: systemd-boot boot configuration: /etc/kernel/cmdline changed; proxmox-boot-tool copies the new initramfs to the ESP(s)",
        *bind_live(), "note: host.intelIommu is on but the CPU is AMD: intel_iommu is never added on AMD", later("iommu=pt"), LIVE_OK,
    ], [*OK_SHARED, OK_T4, "ok: /etc/kernel/cmdline already has iommu=pt", NO_REFRESH,
        APPLIED_NOOP,
        "note: host.intelIommu is on but the CPU is AMD: intel_iommu is never added on AMD"]),
    ("GRUB on ESPs proxmox-boot-tool manages: it refreshes them", T4_INPUTS,
     lambda: dataclasses.replace(host(**ACTIVE, bootloader="grub-uefi"), boot_tool_managed=True), [
        BLACKLIST, MODULES.format(kernel=K68), BIND_T4,
        f"update /etc/default/grub: kernel command line (grub-uefi): add iommu=pt; {PT}",
        INITRAMFS,
        "run `proxmox-boot-tool refresh`: grub-uefi boot configuration: /etc/default/grub changed; proxmox-boot-tool copies the new initramfs to the ESP(s)",
        *bind_live(), later("iommu=pt"), LIVE_OK,
    ], [*OK_SHARED, OK_T4, "ok: /etc/default/grub already has iommu=pt", NO_REFRESH,
        APPLIED_NOOP]),
    ("no kernel parameter wanted", dataclasses.replace(T4_INPUTS, iommu_passthrough=False), lambda: host(**ACTIVE), [
        BLACKLIST, MODULES.format(kernel=K68), BIND_T4,
        INITRAMFS,
        *bind_live(),
        "ok: /etc/default/grub: no kernel parameter needed (intel CPU, kernel 6.8.12-4-pve, iommu=pt not asked)", LIVE_OK,
    ], [*OK_SHARED, OK_T4, "ok: /etc/default/grub: no kernel parameter needed (intel CPU, kernel 6.8.12-4-pve, iommu=pt not asked)", NO_REFRESH,
        APPLIED_NOOP]),
    ("a grub.d file decides the command line", T4_INPUTS,
     lambda: host(**ACTIVE, files={GRUB_D + "/zz-local.cfg": 'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"\n'}), [
        BLACKLIST, MODULES.format(kernel=K68), BIND_T4,
        "update /etc/default/grub.d/zz-local.cfg: kernel command line (grub-bios) (this file decides GRUB_CMDLINE_LINUX_DEFAULT: update-grub "
        f"reads it after /etc/default/grub): add iommu=pt; {PT}",
        INITRAMFS,
        "run `update-grub`: grub-bios boot configuration: /etc/default/grub.d/zz-local.cfg changed",
        *bind_live(), later("iommu=pt"), LIVE_OK,
    ], [*OK_SHARED, OK_T4, "ok: /etc/default/grub.d/zz-local.cfg already has iommu=pt", NO_REFRESH,
        APPLIED_NOOP]),
    ("every function of the card, each model once", T4_INPUTS,
     lambda: host(kernel=K68, iommu=True, gpu=[t4(members=("0000:3a:00.0", "0000:3b:00.1", "0000:3b:00.2", "0000:3b:00.3")), AUDIO, USB, UCSI]), [
        BLACKLIST, MODULES.format(kernel=K68),
        "create /etc/modprobe.d/proxmox-talos-gpu-vfio.conf: bind 10de:10f8,10de:1ad8,10de:1ad9,10de:1eb8 to vfio-pci (every function of 0000:3b:00.0)",
        f"update /etc/default/grub: kernel command line (grub-bios): add iommu=pt; {PT}",
        INITRAMFS,
        "run `update-grub`: grub-bios boot configuration: /etc/default/grub changed",
        *bind_live("0000:3b:00.0 nouveau", "0000:3b:00.1 snd_hda_intel", "0000:3b:00.2 xhci_hcd", "0000:3b:00.3 nvidia-gpu"),
        later("iommu=pt"), LIVE_OK,
    ], [*OK_SHARED, "ok: /etc/modprobe.d/proxmox-talos-gpu-vfio.conf already binds 10de:10f8,10de:1ad8,10de:1ad9,10de:1eb8 to vfio-pci",
        "ok: /etc/default/grub already has iommu=pt", NO_REFRESH,
        APPLIED_NOOP]),
    ("/etc/modules still lists vfio_virqfd on kernel 6.8", T4_INPUTS, lambda: host(**ACTIVE, files={"/etc/modules": "vfio\n  vfio_virqfd\n"}), [
        BLACKLIST, MODULES.format(kernel=K68), BIND_T4,
        f"update /etc/default/grub: kernel command line (grub-bios): add iommu=pt; {PT}",
        INITRAMFS,
        "run `update-grub`: grub-bios boot configuration: /etc/default/grub changed",
        *bind_live(), later("iommu=pt"), LIVE_OK,
        "note: /etc/modules lists vfio_virqfd, which kernel 6.8.12-4-pve no longer has ('Failed to find module'); you may remove that line",
    ], [*OK_SHARED, OK_T4, "ok: /etc/default/grub already has iommu=pt", NO_REFRESH,
        APPLIED_NOOP,
        "note: /etc/modules lists vfio_virqfd, which kernel 6.8.12-4-pve no longer has ('Failed to find module'); you may remove that line"]),
    ("Intel 6.8 with host.intelIommu on", dataclasses.replace(T4_INPUTS, intel_iommu="on"), lambda: host(**ACTIVE), [
        BLACKLIST, MODULES.format(kernel=K68), BIND_T4,
        f"update /etc/default/grub: kernel command line (grub-bios): add intel_iommu=on iommu=pt; intel_iommu=on because host.intelIommu is on; {PT}",
        INITRAMFS, "run `update-grub`: grub-bios boot configuration: /etc/default/grub changed",
        *bind_live(), later("intel_iommu=on iommu=pt"), LIVE_OK,
    ], applied_ok("/etc/default/grub", "intel_iommu=on iommu=pt")),
    ("two GPUs of one stack", HostPrepInputs(gpus=(GpuSpec("0000:3b:00.0", "10de:1eb8", index=0), GpuSpec("0000:af:00.0", "10de:20b5", index=1))),
     lambda: host(kernel=K68, iommu=True, gpu=[t4(), A100], others=[NIC, BRIDGE]), [
        BLACKLIST, MODULES.format(kernel=K68),
        "create /etc/modprobe.d/proxmox-talos-gpu-vfio.conf: bind 10de:1eb8,10de:20b5 to vfio-pci (every function of 0000:3b:00.0, 0000:af:00.0)",
        f"update /etc/default/grub: kernel command line (grub-bios): add iommu=pt; {PT}",
        INITRAMFS, "run `update-grub`: grub-bios boot configuration: /etc/default/grub changed",
        *bind_live("0000:3b:00.0 nouveau", "0000:af:00.0 nouveau"), later("iommu=pt"), LIVE_OK,
    ], applied_ok("/etc/default/grub", "iommu=pt", ids="10de:1eb8,10de:20b5")),
    ("one parameter there already: only the other is added", T4_INPUTS,
     lambda: host(files={GRUB_DEFAULT: GRUB.replace('"quiet"', '"quiet intel_iommu=on"')}), [
        BLACKLIST, MODULES.format(kernel="6.5.13-5-pve"), BIND_T4,
        "update /etc/default/grub: kernel command line (grub-bios): add iommu=pt; intel_iommu=on because Intel CPUs need it before kernel 6.8 "
        f"(running 6.5.13-5-pve); {PT}",
        INITRAMFS, "run `update-grub`: grub-bios boot configuration: /etc/default/grub changed", *REBOOT_65, DEFER.format(kernel="6.5.13-5-pve"),
    ], applied_ok("/etc/default/grub", "intel_iommu=on iommu=pt")),
    ("systemd-boot on Intel, one parameter there already", T4_INPUTS,
     lambda: host(bootloader="systemd-boot", files={KERNEL_CMDLINE: "root=ZFS=rpool/ROOT/pve-1  boot=zfs intel_iommu=on\n"}), [
        BLACKLIST, MODULES.format(kernel="6.5.13-5-pve"), BIND_T4,
        "update /etc/kernel/cmdline: kernel command line (systemd-boot): add iommu=pt; intel_iommu=on because Intel CPUs need it before kernel 6.8 "
        f"(running 6.5.13-5-pve); {PT}",
        INITRAMFS,
        "run `proxmox-boot-tool refresh`: systemd-boot boot configuration: /etc/kernel/cmdline changed; proxmox-boot-tool copies the new initramfs to the ESP(s)",
        *REBOOT_65, DEFER.format(kernel="6.5.13-5-pve"),
    ], applied_ok("/etc/kernel/cmdline", "intel_iommu=on iommu=pt")),
    ("systemd-boot with its parameter there, spaced by hand: the file stays as it is", T4_INPUTS,
     lambda: host(**AMD_SYSTEMD, files={KERNEL_CMDLINE: "root=ZFS=rpool/ROOT/pve-1  boot=zfs iommu=pt \n"}), [
        BLACKLIST, MODULES.format(kernel=K68), BIND_T4, INITRAMFS,
        "run `proxmox-boot-tool refresh`: systemd-boot boot configuration: proxmox-boot-tool copies the new initramfs to the ESP(s)",
        *bind_live(), "ok: /etc/kernel/cmdline already has iommu=pt", later("iommu=pt"), LIVE_OK,
    ], applied_ok("/etc/kernel/cmdline", "iommu=pt")),
    ("kernel 6.2: vfio_virqfd is part of vfio, /etc/modules still lists it", T4_INPUTS,
     lambda: host(kernel="6.2.16-3-pve", files={"/etc/modules": "vfio_virqfd\n"}), [
        BLACKLIST, MODULES.format(kernel="6.2.16-3-pve"), BIND_T4,
        "update /etc/default/grub: kernel command line (grub-bios): add intel_iommu=on iommu=pt; intel_iommu=on because Intel CPUs need it before "
        f"kernel 6.8 (running 6.2.16-3-pve); {PT}",
        INITRAMFS, "run `update-grub`: grub-bios boot configuration: /etc/default/grub changed", *REBOOT_65, DEFER.format(kernel="6.2.16-3-pve"),
        "note: /etc/modules lists vfio_virqfd, which kernel 6.2.16-3-pve no longer has ('Failed to find module'); you may remove that line",
    ], [*applied_ok("/etc/default/grub", "intel_iommu=on iommu=pt"),
        "note: /etc/modules lists vfio_virqfd, which kernel 6.2.16-3-pve no longer has ('Failed to find module'); you may remove that line"]),
    ("a function no driver has claimed", T4_INPUTS, lambda: host(**dict(ACTIVE, gpu=[t4(driver=None)])), [
        *WRITES_ON_ACTIVE_T4, *bind_live("0000:3b:00.0 no driver"), later("iommu=pt"), LIVE_OK,
    ], applied_ok("/etc/default/grub", "iommu=pt")),
    ("a host console on nvidiafb loses it", T4_INPUTS, lambda: host(**ACTIVE, others=[NIC, BRIDGE, dataclasses.replace(CONSOLE, driver="nvidiafb")]), [
        *WRITES_ON_ACTIVE_T4, *bind_live(),
        "note: 0000:af:00.0 (10de:1c82 VGA controller) stays with the host and loses driver nvidiafb at the next boot (blacklisted); "
        "the host console falls back to the firmware framebuffer", later("iommu=pt"), LIVE_OK,
    ], None),
    ("a host console on nouveau loses it", T4_INPUTS, lambda: host(**ACTIVE, others=[NIC, BRIDGE, CONSOLE]), [
        BLACKLIST, MODULES.format(kernel=K68), BIND_T4,
        f"update /etc/default/grub: kernel command line (grub-bios): add iommu=pt; {PT}",
        INITRAMFS,
        "run `update-grub`: grub-bios boot configuration: /etc/default/grub changed",
        *bind_live(),
        "note: 0000:af:00.0 (10de:1c82 VGA controller) stays with the host and loses driver nouveau at the next boot (blacklisted); "
        "the host console falls back to the firmware framebuffer", later("iommu=pt"), LIVE_OK,
    ], None),
]


@pytest.mark.parametrize(("inputs", "make", "fresh", "applied"), [case[1:] for case in FRESH_AND_APPLIED], ids=[case[0] for case in FRESH_AND_APPLIED])
def test_fresh_host_plans_everything_and_the_applied_host_nothing(inputs, make, fresh, applied):
    facts = make()
    plan = plan_host(inputs, facts, OWNER)
    assert lines(plan) == fresh
    assert plan.check_isolation_after_boot is any(line.startswith("note: IOMMU is not active yet") for line in fresh)
    if applied is not None:
        again = plan_host(inputs, booted(facts, plan), OWNER)
        assert lines(again) == applied and again.is_noop


FIRMWARE_OFF = ("the IOMMU is not active although it should be ({why}): it is switched off in the firmware. Enable VT-d (Intel) or "
                "AMD-Vi/IOMMU and SVM (AMD) in the BIOS/UEFI setup, boot, and re-run. Nothing was written.")
TURNED_OFF = "the running kernel command line turns the IOMMU off (amd_iommu=off or iommu=off); remove it from the boot configuration first"
SAME_MODEL = ("proxmox-talos-gpu:gpus[0].{key}: 0000:af:00.0 is the same model (10de:1eb8) as 0000:3b:00.0 and stays with the host; "
              "`options vfio-pci ids=` binds by model, so it would take that device from the host too. Pass both through (list both in gpus), "
              "or bind per device (driver_override), which this program does not do.")
CONSOLE_NOTE = ("{address} (10de:1eb8 3D controller) stays with the host and loses driver nouveau at the next boot (blacklisted); "
                "the host console falls back to the firmware framebuffer")
SECOND_T4 = dataclasses.replace(t4(), address="0000:af:00.0", iommu_group=None, group_members=())
NO_GROUP_NIC = dataclasses.replace(NIC, iommu_group=30, group_members=("0000:3b:00.0",))
CMDLINE_IDS = "the kernel command line sets {token}; it overrides /etc/modprobe.d/proxmox-talos-gpu-vfio.conf. Remove it from the boot configuration and re-run."

# (case, inputs, facts, every refusal, every note): a refused plan writes, runs and reboots nothing.
REFUSED = [
    ("the bootloader cannot be told", T4_INPUTS, lambda: host(bootloader_problem="efibootmgr -v shows systemd-boot but /etc/kernel/cmdline is missing"), [
        "cannot tell how this host boots: efibootmgr -v shows systemd-boot but /etc/kernel/cmdline is missing. Editing the wrong boot "
        "configuration would reboot for nothing, so nothing was written. Check `proxmox-boot-tool status` and `efibootmgr -v` on the host "
        '(pve-docs: "Determine which Bootloader is Used").'], [DEFER.format(kernel="6.5.13-5-pve")[len("note: "):]]),
    ("AMD, amd_iommu=off", T4_INPUTS, lambda: host(cpu="amd", kernel=K68, cmdline="ro quiet amd_iommu=off"), [TURNED_OFF], []),
    ("AMD, iommu=off", T4_INPUTS, lambda: host(cpu="amd", kernel=K68, cmdline="ro quiet iommu=off"), [TURNED_OFF], []),
    ("AMD, IOMMU off in the firmware", T4_INPUTS, lambda: host(cpu="amd", kernel=K68, cmdline="ro intel_iommu=off"),
     [FIRMWARE_OFF.format(why="AMD CPUs have it on by default")], []),
    ("Intel 6.8, IOMMU off in the firmware", T4_INPUTS, lambda: host(kernel=K68),
     [FIRMWARE_OFF.format(why="Intel CPUs have it on by default from kernel 6.8")], []),
    ("Intel 6.5 with intel_iommu=on, IOMMU off in the firmware", T4_INPUTS, lambda: host(cmdline="ro quiet intel_iommu=on"),
     [FIRMWARE_OFF.format(why="intel_iommu=on is already on the command line")], []),
    ("no such device, other NVIDIA devices named", HostPrepInputs(gpus=(GpuSpec("0000:3c:00.0", index=1),)), lambda: host(**ACTIVE), [
        "proxmox-talos-gpu:gpus[1].address: '0000:3c:00.0': no such PCI device on the host; NVIDIA devices present: 0000:3b:00.0 (10de:1eb8 3D controller)"],
     [CONSOLE_NOTE.format(address="0000:3b:00.0")]),
    ("no such device, no NVIDIA device at all (CLI: no config key)", HostPrepInputs(gpus=(GpuSpec("0000:3c:00.0"),)),
     lambda: host(kernel=K68, iommu=True, gpu=[], others=[NIC, BRIDGE]), ["'0000:3c:00.0': no such PCI device on the host"], []),
    ("another model", HostPrepInputs(gpus=(GpuSpec("0000:3b:00.0", "10de:1eb9", index=0),)), lambda: host(**ACTIVE), [
        "proxmox-talos-gpu:gpus[0].id: '10de:1eb9', but 0000:3b:00.0 is 10de:1eb8 (3D controller); set the id lspci -nn shows"], []),
    ("another subsystem", HostPrepInputs(gpus=(GpuSpec("0000:3b:00.0", subsystem_id="10de:0000", index=0),)), lambda: host(**ACTIVE), [
        "proxmox-talos-gpu:gpus[0].subsystemId: '10de:0000', but 0000:3b:00.0 reports subsystem 10de:12a2"], []),
    ("another IOMMU group", HostPrepInputs(gpus=(GpuSpec("0000:3b:00.0", iommu_group=7, index=0),)), lambda: host(**ACTIVE), [
        "proxmox-talos-gpu:gpus[0].iommuGroup: 7, but 0000:3b:00.0 is in IOMMU group 30"], []),
    ("IOMMU on, group unreadable", T4_INPUTS, lambda: host(kernel=K68, iommu=True, gpu=[t4(group=None)]), [
        "proxmox-talos-gpu:gpus[0].address: the IOMMU is active but the IOMMU group of 0000:3b:00.0 cannot be read "
        "(no /sys/bus/pci/devices/<address>/iommu_group); its isolation cannot be checked, so nothing was written"], []),
    ("the group holds a NIC and an unknown device", T4_INPUTS,
     lambda: host(kernel=K68, iommu=True, gpu=[t4(members=("0000:3a:00.0", "0000:05:00.0", "0000:07:00.0"))], others=[NO_GROUP_NIC, BRIDGE]), [
        "proxmox-talos-gpu:gpus[0].address: IOMMU group 30 of 0000:3b:00.0 also holds 0000:05:00.0 (Ethernet controller 8086:1521, driver igb); "
        "0000:07:00.0 (class 0x000000 ?, driver none). Passing the GPU through would hand those devices to the VM too (and cut the host off "
        "them). Move the card to another slot (one whose group holds only the GPU), or enable ACS for that slot in the firmware; nothing was written."], []),
    ("a same-model device stays with the host", T4_INPUTS, lambda: host(others=[NIC, SECOND_T4]),
     [SAME_MODEL.format(key="id")], [DEFER.format(kernel="6.5.13-5-pve")[len("note: "):], CONSOLE_NOTE.format(address="0000:af:00.0")]),
    ("a same-model device stays with the host, no id given", HostPrepInputs(gpus=(GpuSpec("0000:3b:00.0", index=0),)),
     lambda: host(others=[NIC, SECOND_T4]),
     [SAME_MODEL.format(key="address")], [DEFER.format(kernel="6.5.13-5-pve")[len("note: "):], CONSOLE_NOTE.format(address="0000:af:00.0")]),
    ("of two GPUs, the second has a same-model device that stays with the host: its key is named",
     HostPrepInputs(gpus=(GpuSpec("0000:3b:00.0", "10de:1eb8", index=0), GpuSpec("0000:af:00.0", "10de:20b5", index=1))),
     lambda: host(kernel=K68, iommu=True, gpu=[t4(), A100], others=[NIC, BRIDGE, dataclasses.replace(A100, address="0000:d8:00.0", iommu_group=81)]), [
        "proxmox-talos-gpu:gpus[1].id: 0000:d8:00.0 is the same model (10de:20b5) as 0000:af:00.0 and stays with the host; `options vfio-pci ids=` "
        "binds by model, so it would take that device from the host too. Pass both through (list both in gpus), or bind per device (driver_override), "
        "which this program does not do."],
     ["0000:d8:00.0 (10de:20b5 3D controller) stays with the host and loses driver nouveau at the next boot (blacklisted); "
      "the host console falls back to the firmware framebuffer"]),
    ("a host device on the proprietary driver", T4_INPUTS,
     lambda: host(others=[NIC, PciFunction("0000:af:00.0", "10de:1c82", "0x030000", "1043:85d2", "nvidia", None)]), [
        "0000:af:00.0 (10de:1c82 VGA controller) stays with the host and uses the proprietary driver nvidia; blacklisting nouveau, nvidia, "
        "nvidia_drm, nvidia_modeset, nvidia_uvm, nvidiafb would take it away at the next boot. Pass it through too, or prepare this host by hand."],
     [DEFER.format(kernel="6.5.13-5-pve")[len("note: "):]]),
    ("vfio-pci options in a file of someone else's", T4_INPUTS,
     lambda: host(foreign_vfio_options=(("/etc/modprobe.d/vfio.conf", "options vfio-pci ids=10de:1eb8\tdisable_vga=1"),)), [
        "/etc/modprobe.d/vfio.conf sets `options vfio-pci ids=10de:1eb8\\tdisable_vga=1`; vfio-pci options are last-wins, so two files fight "
        "over them. Remove that line (proxmox-talos-gpu keeps the one ids= line in /etc/modprobe.d/proxmox-talos-gpu-vfio.conf) and re-run."],
     [DEFER.format(kernel="6.5.13-5-pve")[len("note: "):]]),
    ("vfio-pci ids on the kernel command line", T4_INPUTS,
     lambda: host(**ACTIVE, cmdline="ro quiet vfio-pci.ids=10de:1eb8 vfio_pci.ids=10de:1eb8,10de:10f8"),
     [CMDLINE_IDS.format(token="vfio-pci.ids=10de:1eb8"), CMDLINE_IDS.format(token="vfio_pci.ids=10de:1eb8,10de:10f8")], []),
    ("systemd-boot with an empty /etc/kernel/cmdline", T4_INPUTS, lambda: host(**AMD_SYSTEMD, files={KERNEL_CMDLINE: " \n"}), [
        "this host boots with systemd-boot (test) but /etc/kernel/cmdline is missing or empty; creating it without the root= parameters would "
        "leave the host unbootable. Restore it (see `proxmox-boot-tool`) and re-run."], []),
    ("systemd-boot with two lines in /etc/kernel/cmdline", T4_INPUTS, lambda: host(**AMD_SYSTEMD, files={KERNEL_CMDLINE: "root=a\nquiet\n"}), [
        "/etc/kernel/cmdline must hold exactly one line (it holds 2); add iommu=pt by hand"], []),
    ("GRUB without /etc/default/grub", T4_INPUTS, lambda: host(files={GRUB_DEFAULT: None}), [
        "this host boots with GRUB (test) but /etc/default/grub is missing; restore it and re-run."], [DEFER.format(kernel="6.5.13-5-pve")[len("note: "):]]),
    ("two GPUs: one missing (the NVIDIA devices named), the other another model", HostPrepInputs(gpus=(
        GpuSpec("0000:3c:00.0", index=0), GpuSpec("0000:af:00.0", "10de:2000", index=1))),
     lambda: host(kernel=K68, iommu=True, gpu=[t4(), A100], others=[NIC, BRIDGE]), [
        "proxmox-talos-gpu:gpus[0].address: '0000:3c:00.0': no such PCI device on the host; NVIDIA devices present: 0000:3b:00.0 "
        "(10de:1eb8 3D controller), 0000:af:00.0 (10de:20b5 3D controller)",
        "proxmox-talos-gpu:gpus[1].id: '10de:2000', but 0000:af:00.0 is 10de:20b5 (3D controller); set the id lspci -nn shows"],
     [CONSOLE_NOTE.format(address="0000:3b:00.0")]),
    ("a GPU another stack passes through (of two others)", T4_INPUTS, lambda: host(**ACTIVE, files={VFIO_FILE: render_vfio_file({
        "p/a": Block((("0000:af:00.0", "10de:20b5", "0x030200"),)), "p/b": Block((("0000:3b:00.0", "10de:1eb8", "0x030200"),))})}), [
        "proxmox-talos-gpu:gpus[0].address: '0000:3b:00.0' is already passed through by stack p/b; one GPU can go to one VM"], []),
    ("groups unreadable for two functions, and a second GPU in another group", HostPrepInputs(gpus=(
        GpuSpec("0000:3b:00.0", index=0), GpuSpec("0000:af:00.0", iommu_group=5, index=1))),
     lambda: host(kernel=K68, iommu=True, gpu=[t4(group=None), dataclasses.replace(AUDIO, iommu_group=None, group_members=()), A100],
                  others=[NIC, BRIDGE]), [
        "proxmox-talos-gpu:gpus[0].address: the IOMMU is active but the IOMMU group of 0000:3b:00.0, 0000:3b:00.1 cannot be read "
        "(no /sys/bus/pci/devices/<address>/iommu_group); its isolation cannot be checked, so nothing was written",
        "proxmox-talos-gpu:gpus[1].iommuGroup: 5, but 0000:af:00.0 is in IOMMU group 80"], []),
    ("systemd-boot on Intel with two lines in /etc/kernel/cmdline", T4_INPUTS,
     lambda: host(bootloader="systemd-boot", files={KERNEL_CMDLINE: "root=a\nquiet\n"}), [
        "/etc/kernel/cmdline must hold exactly one line (it holds 2); add intel_iommu=on iommu=pt by hand"],
     [DEFER.format(kernel="6.5.13-5-pve")[len("note: "):]]),
    ("a long foreign vfio-pci line, shortened", T4_INPUTS,
     lambda: host(**ACTIVE, foreign_vfio_options=(("/etc/modprobe.d/x.conf", "options vfio-pci ids=" + ",".join(["10de:1eb8"] * 12)),)), [
        "/etc/modprobe.d/x.conf sets `options vfio-pci ids=" + ",".join(["10de:1eb8"] * 8) + "...`; vfio-pci options are last-wins, so two "
        "files fight over them. Remove that line (proxmox-talos-gpu keeps the one ids= line in /etc/modprobe.d/proxmox-talos-gpu-vfio.conf) and re-run."],
     []),
    ("GRUB_CMDLINE_LINUX_DEFAULT from a command substitution", T4_INPUTS,
     lambda: host(**ACTIVE, files={GRUB_DEFAULT: 'GRUB_CMDLINE_LINUX_DEFAULT="$(cat /x)"\n'}), [
        '/etc/default/grub line 1 (GRUB_CMDLINE_LINUX_DEFAULT="$(cat /x)") uses shell expansion this program will not rewrite. update-grub reads '
        "/etc/default/grub, then /etc/default/grub.d/*.cfg in order (the last setting wins); nothing was written"], []),
]


@pytest.mark.parametrize(("inputs", "make", "refusals", "notes"), [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
def test_a_refused_plan_names_every_reason_and_changes_nothing(inputs, make, refusals, notes):
    plan = plan_host(inputs, make(), OWNER)
    assert lines(plan) == [f"REFUSED: {refusal}" for refusal in refusals] + [f"note: {note}" for note in notes]
    assert (plan.files, plan.commands, plan.reboot, plan.noops, plan.records, plan.impact) == ((), (), False, (), (), None)
    assert plan.refused and not plan.changes_host and not plan.is_noop


def test_the_plan_refuses_inputs_it_cannot_use():
    with pytest.raises(PlanError) as error:
        plan_host(T4_INPUTS, host(), "two words")
    assert str(error.value) == "owner 'two words' must be letters, digits, '.', '_', '-' and '/' (project/stack)"
    for inputs in (dataclasses.replace(T4_INPUTS, running_guests="ask"), dataclasses.replace(T4_INPUTS, hand_edits="keep")):
        with pytest.raises(PlanError) as error:
            plan_host(inputs, host(), OWNER)
        assert str(error.value) == "running_guests must be one of ('refuse', 'stop') and hand_edits one of ('refuse', 'overwrite')"


# -- what a reboot stops --------------------------------------------------------------

WITHHELD = ("the reboot would stop {count} running guest(s){mine}: {labels}. host.runningGuests is refuse (the default), so the host is "
            "not rebooted; every file is written and refreshed, so the change takes effect at the host's next reboot. To proceed, either "
            "shut those guests down yourself ({shutdowns}) and re-run, or re-run with host.runningGuests: stop (CLI: --running-guests stop): "
            "Proxmox then shuts every guest down gracefully and starts the ones with onboot=1 again.")
STOPS = "the reboot stops these running guests (Proxmox shuts them down; those with onboot=1 start again):"
PVESH_FAILED = "`pvesh get /cluster/resources --type vm` failed (rc=255)"
UNREADABLE = (f"cannot tell which guests run on this host ({PVESH_FAILED}), and host.runningGuests is refuse. Fix the read (pvesh on the "
              "host), or re-run with host.runningGuests: stop (CLI: --running-guests stop) to reboot anyway.")
OWN = Guest(1105, "moody-good", "qemu", "running", True)
OWN_OFF_AT_BOOT = Guest(1105, "moody-good", "qemu", "running", False)
CP = Guest(101, "k8s-cp-1", "qemu", "running", True)
NAS = Guest(200, "nas", "lxc", "running", False)
STOPPED = Guest(300, "old", "qemu", "stopped", True)
MINE = dataclasses.replace(T4_INPUTS, own_vmids=(1105,), node_name="moody-good")
STOP = dataclasses.replace(MINE, running_guests="stop")

# The IOMMU is on, but the T4 is on the nvidia driver and nvidia-persistenced holds it open: only a reboot binds it.
HELD = {"kernel": K68, "iommu": True, "gpu": [t4(driver="nvidia")], "holders": ((2210, "/dev/nvidia0", "nvidia-persistenced"),)}
REBOOT_HELD = ("reboot: 0000:3b:00.0 is driven by the nvidia driver and in use by nvidia-persistenced (pid 2210): the driver's unbind waits "
               "until every user closes the device (nv-pci.c nv_pci_remove), so it is not released live; stop them "
               "(e.g. `systemctl stop nvidia-persistenced`) and re-run to bind it without a reboot, or let the reboot bind it")

# (case, inputs, facts: (guests, guests_problem), the impact's lines in the plan, blocked, drain node)
IMPACTS = [
    ("not read (read before any reboot)", MINE, (None, ""), [UNREAD], "", None),
    ("the read failed, refuse", MINE, (None, PVESH_FAILED), [f"reboot withheld (host.runningGuests: refuse): {UNREADABLE}"], UNREADABLE, None),
    ("the read failed, stop", STOP, (None, PVESH_FAILED),
     [UNREAD, f"note: the guests could not be read ({PVESH_FAILED}); host.runningGuests is stop, so the reboot goes ahead"], "", None),
    ("nothing runs", MINE, ((STOPPED,), ""), ["the reboot stops no running guest"], "", None),
    ("only this stack's VM: drained first", MINE, ((OWN, STOPPED), ""), [
        STOPS, "  - 1105 moody-good (qemu), onboot, this stack's VM",
        "before the reboot: cordon and drain Kubernetes node moody-good; uncordon it once it is Ready again"], "", "moody-good"),
    ("this stack's VM without a node name and without onboot", dataclasses.replace(MINE, node_name=None), ((OWN_OFF_AT_BOOT,), ""), [
        STOPS, "  - 1105 moody-good (qemu), no onboot: stays off, this stack's VM",
        "note: this stack's VM 1105 runs, but no Kubernetes node name is known (--node-name): it is not drained first",
        "note: this stack's VM 1105 moody-good (qemu) has no onboot: it stays off after the reboot (`qm set 1105 --onboot 1`, or start it by hand)"],
     "", None),
    ("other guests run, refuse", MINE, ((OWN, CP, NAS, STOPPED), ""), [
        STOPS, "  - 1105 moody-good (qemu), onboot, this stack's VM", "  - 101 k8s-cp-1 (qemu), onboot", "  - 200 nas (lxc), no onboot: stays off",
        "before the reboot: cordon and drain Kubernetes node moody-good; uncordon it once it is Ready again",
        "reboot withheld (host.runningGuests: refuse): " + WITHHELD.format(count=2, mine=" besides this stack's VM 1105", labels="101 k8s-cp-1 (qemu), 200 nas (lxc)",
                                                                             shutdowns="`qm shutdown 101`, `pct shutdown 200`")],
     WITHHELD.format(count=2, mine=" besides this stack's VM 1105", labels="101 k8s-cp-1 (qemu), 200 nas (lxc)", shutdowns="`qm shutdown 101`, `pct shutdown 200`"),
     "moody-good"),
    ("other guests run, stop", STOP, ((CP, NAS), ""), [STOPS, "  - 101 k8s-cp-1 (qemu), onboot", "  - 200 nas (lxc), no onboot: stays off"], "", None),
    ("two VMs of this stack", dataclasses.replace(MINE, own_vmids=(1105, 1106)), ((OWN, CP), ""), [
        STOPS, "  - 1105 moody-good (qemu), onboot, this stack's VM", "  - 101 k8s-cp-1 (qemu), onboot",
        "before the reboot: cordon and drain Kubernetes node moody-good; uncordon it once it is Ready again",
        "reboot withheld (host.runningGuests: refuse): " + WITHHELD.format(count=1, mine=" besides this stack's VM 1105, 1106", labels="101 k8s-cp-1 (qemu)",
                                                                             shutdowns="`qm shutdown 101`")],
     WITHHELD.format(count=1, mine=" besides this stack's VM 1105, 1106", labels="101 k8s-cp-1 (qemu)", shutdowns="`qm shutdown 101`"), "moody-good"),
    ("no VM of this stack known (CLI)", dataclasses.replace(MINE, own_vmids=(), node_name=None), ((OWN,), ""), [
        STOPS, "  - 1105 moody-good (qemu), onboot",
        "reboot withheld (host.runningGuests: refuse): " + WITHHELD.format(count=1, mine="", labels="1105 moody-good (qemu)", shutdowns="`qm shutdown 1105`")],
     WITHHELD.format(count=1, mine="", labels="1105 moody-good (qemu)", shutdowns="`qm shutdown 1105`"), None),
]


@pytest.mark.parametrize(("inputs", "guests", "shown", "blocked", "drain"), [case[1:] for case in IMPACTS], ids=[case[0] for case in IMPACTS])
def test_the_plan_says_what_its_reboot_stops_and_whether_it_may(inputs, guests, shown, blocked, drain):
    facts = host(**HELD, guests=guests[0], guests_problem=guests[1])
    plan = plan_host(inputs, facts, OWNER)
    assert lines(plan) == [*WRITES_ON_ACTIVE_T4, REBOOT_HELD, *shown, later("iommu=pt")]
    assert (plan.impact.blocked, plan.impact.drain_node) == (blocked, drain)
    assert (plan.to_json()["reboot_withheld"], plan.to_json()["drain_node"]) == (blocked, drain)
    # Once written and rebooted (the guests as they were), nothing is stopped: no impact at all.
    again = plan_host(inputs, booted(facts, plan), OWNER)
    assert again.impact is None and again.to_json()["reboot_stops"] is None and again.is_noop


def test_a_reboot_the_config_does_not_allow_is_left_to_the_admin():
    plan = plan_host(dataclasses.replace(T4_INPUTS, allow_reboot=False), host(**HELD), OWNER)
    assert lines(plan) == [*WRITES_ON_ACTIVE_T4, f"{REBOOT_HELD} (host.allowReboot is false: reboot by hand)", UNREAD, later("iommu=pt")]
    assert plan.reboot and not plan.allow_reboot


# -- a second stack on a host the first one prepared, as JSON -------------------------

SECOND_STACK = HostPrepInputs(gpus=(GpuSpec("0000:af:00.0", index=0),), own_vmids=(1106,), node_name="big-gpu")
BIG = Guest(1106, "big-gpu", "qemu", "running", False)
VFIO_DIFF = ("--- a/etc/modprobe.d/proxmox-talos-gpu-vfio.conf\n+++ b/etc/modprobe.d/proxmox-talos-gpu-vfio.conf\n@@ -4,4 +4,7 @@\n"
             " # BEGIN proxmox-talos-gpu/a\n # function 0000:3b:00.0 10de:1eb8 0x030200\n # END proxmox-talos-gpu/a\n"
             "-options vfio-pci ids=10de:1eb8\n+# BEGIN proxmox-talos-gpu/b\n+# function 0000:af:00.0 10de:20b5 0x030200\n"
             "+# END proxmox-talos-gpu/b\n+options vfio-pci ids=10de:1eb8,10de:20b5\n")


def second_stack_host() -> HostFacts:
    first = two_gpu_host()
    return dataclasses.replace(written(first, plan_host(T4_INPUTS, first, "proxmox-talos-gpu/a")), guests=(BIG, CP, NAS, STOPPED),
                               stale_temps=("/etc/modprobe.d/.proxmox-talos-gpu-vfio.conf.ptg-tmp-1",))


def test_a_second_stack_on_a_host_with_the_iommu_on_binds_its_gpu_live_and_stops_no_guest():
    plan = plan_host(SECOND_STACK, second_stack_host(), "proxmox-talos-gpu/b")
    assert not plan.reboot and plan.impact is None and plan.to_json()["reboot_stops"] is None
    assert plan.to_json()["rebinds"] == [{"address": "0000:af:00.0", "from": "nouveau", "to": "vfio-pci", "reason": LIVE_WHY, "forget_only": False}]
    assert plan.to_json()["notes"] == [later("iommu=pt")[len("note: "):], LIVE_OK[len("note: "):]]


def held_a100(facts: HostFacts) -> HostFacts:
    """The second GPU on the nvidia driver, held open by nvidia-persistenced: it cannot be released live."""
    a100 = dataclasses.replace(facts.functions["0000:af:00.0"], driver="nvidia")
    return dataclasses.replace(facts, functions={**facts.functions, a100.address: a100}, devices={**facts.devices, a100.address: a100},
                               holders=((2210, "/dev/nvidia1", "nvidia-persistenced"),))


def test_a_second_stack_adds_its_block_and_says_so_in_text_and_json():
    plan = plan_host(SECOND_STACK, held_a100(second_stack_host()), "proxmox-talos-gpu/b")
    held = REBOOT_HELD[len("reboot: "):].replace("0000:3b:00.0", "0000:af:00.0")
    withheld = WITHHELD.format(count=2, mine=" besides this stack's VM 1106", labels="101 k8s-cp-1 (qemu), 200 nas (lxc)",
                               shutdowns="`qm shutdown 101`, `pct shutdown 200`")
    assert plan.render().splitlines() == [
        "update /etc/modprobe.d/proxmox-talos-gpu-vfio.conf: bind 10de:20b5 to vfio-pci (every function of 0000:af:00.0)",
        *("    " + line for line in VFIO_DIFF.splitlines()),
        "remove /etc/modprobe.d/.proxmox-talos-gpu-vfio.conf.ptg-tmp-1: temp file left by an interrupted run",
        "run `update-initramfs -u -k all`: the initramfs loads vfio-pci early; /etc/modprobe.d/proxmox-talos-gpu-vfio.conf changed",
        f"reboot: {held}",
        STOPS, "  - 1106 big-gpu (qemu), no onboot: stays off, this stack's VM", "  - 101 k8s-cp-1 (qemu), onboot", "  - 200 nas (lxc), no onboot: stays off",
        "before the reboot: cordon and drain Kubernetes node big-gpu; uncordon it once it is Ready again",
        f"reboot withheld (host.runningGuests: refuse): {withheld}",
        "note: this stack's VM 1106 big-gpu (qemu) has no onboot: it stays off after the reboot (`qm set 1106 --onboot 1`, or start it by hand)",
        *OK_SHARED, "ok: /etc/default/grub already has iommu=pt", later("iommu=pt")]
    assert plan.to_json() == {
        "owner": "proxmox-talos-gpu/b", "refusals": [],
        "files": [{"path": VFIO_FILE, "action": "update", "reason": "bind 10de:20b5 to vfio-pci (every function of 0000:af:00.0)", "diff": VFIO_DIFF}],
        "cleanup": ["/etc/modprobe.d/.proxmox-talos-gpu-vfio.conf.ptg-tmp-1"],
        "commands": [{"command": ["update-initramfs", "-u", "-k", "all"],
                      "reason": "the initramfs loads vfio-pci early; /etc/modprobe.d/proxmox-talos-gpu-vfio.conf changed"}],
        "rebinds": [], "reboot": True, "reboot_reason": held,
        "reboot_stops": [{"vmid": 1106, "name": "big-gpu", "type": "qemu", "onboot": False, "own": True, "hastate": "", "ha": None},
                         {"vmid": 101, "name": "k8s-cp-1", "type": "qemu", "onboot": True, "own": False, "hastate": "", "ha": None},
                         {"vmid": 200, "name": "nas", "type": "lxc", "onboot": False, "own": False, "hastate": "", "ha": None}],
        "reboot_moves": [], "reboot_withheld": withheld, "drain_node": "big-gpu",
        "noops": [line[len("ok: "):] for line in OK_SHARED] + ["/etc/default/grub already has iommu=pt"], "notes": [later("iommu=pt")[len("note: "):]],
        "wanted_cmdline": ["iommu=pt"], "functions": ["0000:af:00.0"]}
    assert plan.records == ((VFIO_FILE, plan.files[0].after),) and plan.files[0].after.endswith("options vfio-pci ids=10de:1eb8,10de:20b5\n")


def test_a_refused_plan_as_json_names_the_config_key():
    plan = plan_host(HostPrepInputs(gpus=(GpuSpec("0000:3b:00.0", iommu_group=7, index=0),)), host(**ACTIVE), OWNER)
    assert plan.to_json() == {
        "owner": OWNER, "refusals": [{"key": "proxmox-talos-gpu:gpus[0].iommuGroup", "message": "7, but 0000:3b:00.0 is in IOMMU group 30"}],
        "files": [], "cleanup": [], "commands": [], "rebinds": [], "reboot": False, "reboot_reason": "", "reboot_stops": None,
        "reboot_moves": [], "reboot_withheld": "",
        "drain_node": None, "noops": [], "notes": [], "wanted_cmdline": [], "functions": []}
    cli = plan_host(HostPrepInputs(gpus=(GpuSpec("0000:3c:00.0"),)), host(**ACTIVE), OWNER)
    assert cli.to_json()["refusals"] == [{"key": None, "message": "'0000:3c:00.0': no such PCI device on the host; NVIDIA devices present: "
                                                                  "0000:3b:00.0 (10de:1eb8 3D controller)"}]


# -- interrupted runs and files changed since this program wrote them ------------------

def applied_host(**facts) -> HostFacts:
    fresh = host(**facts)
    return written(fresh, plan_host(T4_INPUTS, fresh, OWNER))


OK_GRUB_65 = [*OK_SHARED, OK_T4, "ok: /etc/default/grub already has intel_iommu=on iommu=pt"]


@pytest.mark.parametrize(("facts", "pending", "shown"), [
    ({}, ("update-initramfs",), ["run `update-initramfs -u -k all`: the initramfs loads vfio-pci early; an interrupted run left it pending",
                                 *REBOOT_65, *OK_GRUB_65, DEFER.format(kernel="6.5.13-5-pve")]),
    ({}, ("update-grub",), ["run `update-grub`: grub-bios boot configuration: an interrupted run left it pending",
                            *REBOOT_65, *OK_GRUB_65, DEFER.format(kernel="6.5.13-5-pve")]),
    (AMD_SYSTEMD, ("proxmox-boot-tool-refresh",), [
        "run `proxmox-boot-tool refresh`: systemd-boot boot configuration: an interrupted run left it pending",
        *bind_live(), *OK_SHARED, OK_T4, "ok: /etc/kernel/cmdline already has iommu=pt", later("iommu=pt"), LIVE_OK]),
], ids=["update-initramfs", "update-grub", "proxmox-boot-tool refresh"])
def test_a_command_an_interrupted_run_left_pending_is_run_again(facts, pending, shown):
    plan = plan_host(T4_INPUTS, dataclasses.replace(applied_host(**facts), pending=pending), OWNER)
    assert lines(plan) == shown


def test_hand_edits_are_refused_by_default_and_replaced_when_allowed():
    applied = applied_host()
    added = "".join(f"install extra{i} /bin/false\n" for i in range(10))
    edited = dataclasses.replace(applied, files={**applied.files, BLACKLIST_FILE: applied.files[BLACKLIST_FILE] + added, VFIO_FILE: None,
                                                 MODULES_LOAD_FILE: applied.files[MODULES_LOAD_FILE].replace("\n", "\r\n")})
    listed = [f"+install extra{i} /bin/false" for i in range(10)]
    refusal = ("REFUSED: {path} was edited by hand since proxmox-talos-gpu wrote it ({edits}); rewriting it would drop that. Move your lines "
               "to a file of your own in the same folder and re-run, or let this run replace them: set host.handEdits: overwrite (CLI: "
               "--hand-edits overwrite). Nothing was written.")
    assert lines(plan_host(T4_INPUTS, edited, OWNER)) == [
        refusal.format(path=BLACKLIST_FILE, edits="; ".join(f"`{edit}`" for edit in listed[:8]) + " and 2 more"),
        refusal.format(path=MODULES_LOAD_FILE, edits="`(only blank lines or line endings changed)`"),
        DEFER.format(kernel="6.5.13-5-pve")]
    assert lines(plan_host(dataclasses.replace(T4_INPUTS, hand_edits="overwrite"), edited, OWNER)) == [
        f"update {BLACKLIST_FILE}: keep nouveau, nvidia, nvidia_drm, nvidia_modeset, nvidia_uvm, nvidiafb off the GPU so "
        f"vfio-pci can claim it; replaces the hand edits ({'; '.join(listed)}) as host.handEdits is overwrite",
        "update /etc/modules-load.d/proxmox-talos-gpu-vfio.conf: load the VFIO modules at boot (vfio_virqfd is part of vfio from kernel 6.2; "
        "running 6.5.13-5-pve); replaces the hand edits ((only blank lines or line endings changed)) as host.handEdits is overwrite",
        f"{BIND_T4} (it was deleted since proxmox-talos-gpu wrote it)",
        INITRAMFS, *REBOOT_65, "ok: /etc/default/grub already has intel_iommu=on iommu=pt", DEFER.format(kernel="6.5.13-5-pve")]


# (case, path, lines the file holds: before, as written, now) -> every line of it that is a hand edit
LEGACY_VFIO = ("# Managed by proxmox-talos-gpu: binds passed-through GPUs to vfio-pci.\n# BEGIN p/s\n# function 0000:3b:00.0 10de:1eb8 0x030200\n"
               "# END p/s\noptions vfio-pci ids=10de:1eb8,10de:10f8\nsoftdep snd_hda_intel pre: vfio-pci\nsoftdep xhci_pci pre: vfio-pci\n"
               "softdep i2c_nvidia_gpu pre: vfio-pci\n")
HAND_EDITS = [
    ("vfio file from before records were kept: only lines it never writes", VFIO_FILE, None, None,
     LEGACY_VFIO + "\n  \n# begin p/s\noptions vfio-pci ids=10de:1eb8 disable_vga=1\noptions vfio-pci ids=10DE:1EB8\nsoftdep nouveau pre: vfio-pci\n",
     ["+# begin p/s", "+options vfio-pci ids=10de:1eb8 disable_vga=1", "+options vfio-pci ids=10DE:1EB8", "+softdep nouveau pre: vfio-pci"]),
    ("module list from before records were kept (vfio_virqfd was written for old kernels)", MODULES_LOAD_FILE, None, None,
     "# Managed by proxmox-talos-gpu: VFIO modules for PCI passthrough.\nvfio\nvfio_iommu_type1\nvfio_pci\nvfio_virqfd\nkvm\n", ["+kvm"]),
    ("blacklist from before records were kept", BLACKLIST_FILE, None, None, "blacklist nouveau\nblacklist radeon\n", ["+blacklist radeon"]),
    ("a file it does not own is never a hand edit", GRUB_DEFAULT, None, None, "GRUB_TIMEOUT=3\n", []),
    ("as written", VFIO_FILE, None, LEGACY_VFIO, LEGACY_VFIO, []),
    ("deleted since", VFIO_FILE, None, LEGACY_VFIO, None, []),
    ("a run interrupted after the record: the file still holds the previous one", VFIO_FILE, LEGACY_VFIO, LEGACY_VFIO + "# more\n", LEGACY_VFIO, []),
    ("the previous record is not what the file holds: the current record counts", VFIO_FILE, "old\n", LEGACY_VFIO, LEGACY_VFIO + "x\n", ["+x"]),
    ("lines added and removed", BLACKLIST_FILE, None, "a\nb\nb\n", "b\nc\n", ["+c", "-a", "-b"]),
    ("only blank lines and line endings", BLACKLIST_FILE, None, "a\nb\n", "a\r\n\r\nb\r\n \n", ["(only blank lines or line endings changed)"]),
]


@pytest.mark.parametrize(("path", "previous", "record", "current", "edits"), [case[1:] for case in HAND_EDITS], ids=[case[0] for case in HAND_EDITS])
def test_hand_edits_of_a_file_this_program_wrote(path, previous, record, current, edits):
    records = {path: record} if record is not None else {}
    if previous is not None:
        records[path + ".prev"] = previous
    assert hand_edits(path, host(files={path: current}, written=records)) == edits


# -- verification: the running host against the plan -------------------------------------

NOT_ON_VFIO = "0000:3b:00.0 (10de:1eb8 3D controller) is bound to {driver}, not vfio-pci (check `lspci -nnk -s 0000:3b:00.0` and `dmesg | grep -i vfio`)"
VERIFIED = ("IOMMU active", "0000:3b:00.0 (10de:1eb8) bound to vfio-pci", "/proc/cmdline has intel_iommu=on iommu=pt")


def prepared() -> HostFacts:
    fresh = host()
    return booted(fresh, plan_host(T4_INPUTS, fresh, OWNER))


def with_t4(facts: HostFacts, **changes) -> HostFacts:
    fn = dataclasses.replace(facts.functions["0000:3b:00.0"], **changes)
    return dataclasses.replace(facts, functions={fn.address: fn}, devices={**facts.devices, fn.address: fn})


# (case, inputs, facts) -> (problems, checks)
VERIFY = [
    ("prepared and rebooted", T4_INPUTS, prepared, ((), VERIFIED)),
    ("nothing done yet", T4_INPUTS, host, ((
        "the IOMMU is not active: enable VT-d (Intel) or AMD-Vi (AMD) in the firmware, and check the kernel command line",
        NOT_ON_VFIO.format(driver="nouveau"),
        "/proc/cmdline lacks intel_iommu=on iommu=pt (running: BOOT_IMAGE=/boot/vmlinuz ro quiet)",
        "host files are not as planned: /etc/modprobe.d/proxmox-talos-gpu-blacklist.conf, /etc/modules-load.d/proxmox-talos-gpu-vfio.conf, "
        "/etc/modprobe.d/proxmox-talos-gpu-vfio.conf, /etc/default/grub, update-initramfs -u -k all, update-grub still to do"), ())),
    ("rebooted, but the function has no driver", T4_INPUTS, lambda: with_t4(prepared(), driver=None),
     ((NOT_ON_VFIO.format(driver="no driver"),), ("IOMMU active", "/proc/cmdline has intel_iommu=on iommu=pt"))),
    ("a NIC joined the group after the reboot", T4_INPUTS, lambda: with_t4(prepared(), group_members=("0000:05:00.0",)), ((
        "IOMMU group 30 of 0000:3b:00.0 also holds 0000:05:00.0 (Ethernet controller 8086:1521, driver igb). "
        "Passing the GPU through would hand those devices to the VM too (and cut the host off them). Move the card to another slot (one whose "
        "group holds only the GPU), or enable ACS for that slot in the firmware. The host files are written; run undo to revert them.",), VERIFIED)),
    ("configured for another IOMMU group", HostPrepInputs(gpus=(GpuSpec("0000:3b:00.0", iommu_group=7, index=0),)), prepared,
     (("proxmox-talos-gpu:gpus[0].iommuGroup: 7, but 0000:3b:00.0 is in IOMMU group 30",), VERIFIED)),
    ("the GPU is gone", HostPrepInputs(gpus=(GpuSpec("0000:3c:00.0", index=0),)), prepared,
     (("0000:3c:00.0: no such PCI device on the host",), ("IOMMU active", "/proc/cmdline has intel_iommu=on iommu=pt"))),
    ("of two GPUs the first is gone: the second is still checked", HostPrepInputs(gpus=(GpuSpec("0000:3c:00.0", index=0), GpuSpec("0000:3b:00.0", index=1))),
     prepared, (("0000:3c:00.0: no such PCI device on the host",), VERIFIED)),
    ("no kernel parameter wanted", dataclasses.replace(T4_INPUTS, iommu_passthrough=False),
     lambda: booted(host(**ACTIVE), plan_host(dataclasses.replace(T4_INPUTS, iommu_passthrough=False), host(**ACTIVE), OWNER)),
     ((), ("IOMMU active", "0000:3b:00.0 (10de:1eb8) bound to vfio-pci"))),
    ("a command still pending", T4_INPUTS, lambda: dataclasses.replace(prepared(), pending=("update-grub",)),
     (("host files are not as planned: update-grub still to do",), VERIFIED)),
]


@pytest.mark.parametrize(("inputs", "make", "report"), [case[1:] for case in VERIFY], ids=[case[0] for case in VERIFY])
def test_verify_names_every_problem_and_every_check(inputs, make, report):
    result = verify_host(inputs, make(), OWNER)
    assert (result.problems, result.checks) == report
    assert result.ok is not report[0]


def test_verify_reports_an_owner_the_planner_refuses():
    result = verify_host(T4_INPUTS, prepared(), "two words")
    assert result.problems == ("owner 'two words' must be letters, digits, '.', '_', '-' and '/' (project/stack)",) and not result.ok


# -- undo of a kernel command-line file ----------------------------------------------------

KEPT = "the original is kept at /var/lib/proxmox-talos-gpu/kept/etc/default/grub"
BY_HAND = f"/etc/default/grub changed by hand since proxmox-talos-gpu edited it, so it is not restored byte for byte; {KEPT}"
TAKE_OUT = "the file changed by hand since proxmox-talos-gpu edited it: take out only the parameters it added ({})"
EXACT = "restore the original, byte for byte"
OURS = GRUB.replace('"quiet"', '"quiet intel_iommu=on iommu=pt"')
AMD_OURS = GRUB.replace('"quiet"', '"quiet iommu=pt"')
TIMEOUT_3 = GRUB.replace("GRUB_TIMEOUT=5", "GRUB_TIMEOUT=3")


def grub_value(value: str, base: str = GRUB) -> str:
    return base.replace('"quiet"', f'"{value}"')


# (case, current, what this program wrote (None: no record), the original) -> (content, reason, exact, notes)
RESTORES = [
    ("as written", OURS, OURS, GRUB, (GRUB, EXACT, True, ())),
    ("no record, but what its edit of the original gives", OURS, None, GRUB, (GRUB, EXACT, True, ())),
    ("changed by hand since (no record)", OURS.replace("GRUB_TIMEOUT=5", "GRUB_TIMEOUT=3"), None, GRUB,
     (TIMEOUT_3, TAKE_OUT.format("intel_iommu=on iommu=pt"), False, (BY_HAND,))),
    ("changed by hand since: only what the record says it added comes out", grub_value("quiet intel_iommu=on iommu=pt", TIMEOUT_3), AMD_OURS, GRUB,
     (grub_value("quiet intel_iommu=on", TIMEOUT_3), TAKE_OUT.format("iommu=pt"), False, (
         "/etc/default/grub: kept intel_iommu=on: changed by hand since proxmox-talos-gpu set intel_iommu", BY_HAND))),
    ("a value of its own changed by hand is kept", grub_value("quiet intel_iommu=on iommu=soft", TIMEOUT_3), OURS, GRUB,
     (grub_value("quiet iommu=soft", TIMEOUT_3), TAKE_OUT.format("intel_iommu=on"), False, (
         "/etc/default/grub: kept iommu=soft: changed by hand since proxmox-talos-gpu set iommu", BY_HAND))),
    ("a value it replaced comes back", grub_value("quiet intel_iommu=on nomodeset", TIMEOUT_3), grub_value("quiet intel_iommu=on"),
     grub_value("quiet intel_iommu=off"), (grub_value("quiet nomodeset intel_iommu=off", TIMEOUT_3), TAKE_OUT.format("intel_iommu=on"), False, (BY_HAND,))),
    ("one of its parameters taken out by hand: the rest comes out, the original set aside", grub_value("quiet iommu=pt"), OURS, GRUB,
     (GRUB, TAKE_OUT.format("iommu=pt"), False, (BY_HAND,))),
    ("a value it replaced, set again by hand, is not doubled", grub_value("quiet intel_iommu=on intel_iommu=off", TIMEOUT_3),
     grub_value("quiet intel_iommu=on"), grub_value("quiet intel_iommu=off"),
     (grub_value("quiet intel_iommu=off", TIMEOUT_3), TAKE_OUT.format("intel_iommu=on"), False, (BY_HAND,))),
    ("its parameters already taken out by hand", TIMEOUT_3, OURS, GRUB, (TIMEOUT_3, "", False, (BY_HAND,))),
    ("a record it cannot read: its usual parameters come out", OURS.replace("GRUB_TIMEOUT=5", "GRUB_TIMEOUT=3"), 'GRUB_CMDLINE_LINUX_DEFAULT="$(x)"\n', GRUB,
     (TIMEOUT_3, TAKE_OUT.format("intel_iommu=on iommu=pt"), False, (BY_HAND,))),
    ("the line removed by hand", "GRUB_TIMEOUT=5\n", OURS, GRUB, ("GRUB_TIMEOUT=5\n", "", False, (
        "/etc/default/grub no longer sets GRUB_CMDLINE_LINUX_DEFAULT (removed by hand since proxmox-talos-gpu edited it): nothing of this "
        f"program's is left to take back, so the file stays as it is; {KEPT}",))),
    ("shell it cannot read any more", 'GRUB_CMDLINE_LINUX_DEFAULT="$(x)"\n', OURS, GRUB, ('GRUB_CMDLINE_LINUX_DEFAULT="$(x)"\n', "", False, (
        '/etc/default/grub cannot be read any more (/etc/default/grub line 1 (GRUB_CMDLINE_LINUX_DEFAULT="$(x)") uses shell expansion this '
        f"program will not rewrite): left as it is; {KEPT}",))),
    ("no record, an original that never set it: the line its edit added comes out", 'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on iommu=pt"\n',
     None, "GRUB_TIMEOUT=5\n", ("GRUB_TIMEOUT=5\n", EXACT, True, ())),
    ("no record, and an original it could not have edited", OURS, None, 'GRUB_CMDLINE_LINUX_DEFAULT="$(x)"\n', (OURS, "", False, (
        '/etc/default/grub cannot be read any more (/etc/default/grub line 1 (GRUB_CMDLINE_LINUX_DEFAULT="$(x)") uses shell expansion this '
        f"program will not rewrite): left as it is; {KEPT}",))),
]


@pytest.mark.parametrize(("current", "record", "original", "restored"), [case[1:] for case in RESTORES], ids=[case[0] for case in RESTORES])
def test_undo_gives_back_the_original_or_takes_out_only_its_own_parameters(current, record, original, restored):
    result = restore_cmdline(GRUB_DEFAULT, current, original, record)
    assert (result.content, result.reason, result.exact, result.notes) == restored


def test_undo_without_a_record_of_a_grub_d_file_that_never_set_it_keeps_the_line():
    # The planner adds a missing line only to /etc/default/grub: in a grub.d file it came from someone else.
    cfg = f"{GRUB_D}/50-local.cfg"
    result = restore_cmdline(cfg, 'x=1\nGRUB_CMDLINE_LINUX_DEFAULT="iommu=pt"\n', "x=1\n")
    assert (result.content, result.reason, result.exact, result.notes) == ('x=1\nGRUB_CMDLINE_LINUX_DEFAULT=""\n', TAKE_OUT.format("iommu=pt"), False, (
        f"{cfg} changed by hand since proxmox-talos-gpu edited it, so it is not restored byte for byte; the original is kept at "
        f"/var/lib/proxmox-talos-gpu/kept{cfg}",))


def test_undo_without_a_record_of_a_grub_d_file_that_set_it_is_exact_when_it_is_what_the_edit_gives():
    # The planner edits the value where a grub.d file decides it, so that file's edit is recognised too.
    cfg = f"{GRUB_D}/50-local.cfg"
    result = restore_cmdline(cfg, 'x=1\nGRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n', 'x=1\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    assert (result.content, result.reason, result.exact, result.notes) == ('x=1\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', EXACT, True, ())


def test_undo_of_kernel_cmdline_without_a_record_is_exact_when_it_is_what_the_edit_gives():
    result = restore_cmdline(KERNEL_CMDLINE, "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt\n", ZFS_CMDLINE)
    assert (result.content, result.reason, result.exact, result.notes) == (ZFS_CMDLINE, EXACT, True, ())


def test_undo_of_kernel_cmdline_puts_back_what_it_replaced():
    result = restore_cmdline(KERNEL_CMDLINE, "quiet root=ZFS=rpool/ROOT/pve-1 intel_iommu=on iommu=pt\n",
                             "root=ZFS=rpool/ROOT/pve-1 intel_iommu=off iommu=pt\n", "root=ZFS=rpool/ROOT/pve-1 intel_iommu=on iommu=pt\n")
    assert (result.content, result.reason, result.exact) == (
        "quiet root=ZFS=rpool/ROOT/pve-1 iommu=pt intel_iommu=off\n", TAKE_OUT.format("intel_iommu=on"), False)
    assert result.notes == ("/etc/kernel/cmdline changed by hand since proxmox-talos-gpu edited it, so it is not restored byte for byte; "
                            "the original is kept at /var/lib/proxmox-talos-gpu/kept/etc/kernel/cmdline",)


# -- undo of the whole host ------------------------------------------------------------------

REMOVE = "delete {path}: created by proxmox-talos-gpu: remove it"
REMOVED_OWN = [REMOVE.format(path=path) for path in (BLACKLIST_FILE, VFIO_FILE, MODULES_LOAD_FILE)]
UNDO_REFRESH = [INITRAMFS, "run `update-grub`: grub-bios boot configuration: /etc/default/grub changed"]
KEEPS_VFIO = "note: the running host keeps the GPU on vfio-pci until its next reboot"
OWNED = (BLACKLIST_FILE, VFIO_FILE, MODULES_LOAD_FILE)
ALL_FOUR = (GRUB_DEFAULT, *OWNED)
ONLY_B = ("# Managed by proxmox-talos-gpu: binds passed-through GPUs to vfio-pci.\n"
          "# One block per stack; each stack edits only its own block, and the lines\n"
          "# after the blocks are derived from all of them. Do not edit by hand.\n"
          "# BEGIN p/b\n# function 0000:af:00.0 10de:20b5 0x030200\n# END p/b\noptions vfio-pci ids=10de:20b5\n")
SAME_MODEL_BLOCKS = ("# BEGIN p/a\n# function 0000:3b:00.0 10de:1eb8 0x030200\n# END p/a\n# BEGIN p/b\n# function 0000:af:00.0 10de:1eb8 0x030200\n"
                     "# END p/b\noptions vfio-pci ids=10de:1eb8\n")


def with_files(facts: HostFacts, **changes) -> HostFacts:
    return dataclasses.replace(facts, files={**facts.files, **{{"grub": GRUB_DEFAULT, "blacklist": BLACKLIST_FILE, "vfio": VFIO_FILE}[k]: v
                                                                for k, v in changes.items()}})


def two_stacks() -> HostFacts:
    first = written(two_gpu_host(), plan_host(T4_INPUTS, two_gpu_host(), "p/a"))
    second = plan_host(HostPrepInputs(gpus=(GpuSpec("0000:af:00.0", index=0),)), first, "p/b")
    return booted(written(first, second), second)


def prepared_host(**facts) -> HostFacts:
    """A host this program prepared and rebooted: its GPU on vfio-pci since boot (no record of a live binding)."""
    fresh = host(**facts)
    return booted(fresh, plan_host(T4_INPUTS, fresh, OWNER))


SHARED_CARDS = {"p/a": (("0000:3b:00.0", "10de:1eb8", "0x030200"), ("0000:3b:00.1", "10de:10f8", "0x040300")),
                "p/b": (("0000:af:00.0", "10de:1eb8", "0x030200"), ("0000:af:00.1", "10de:10f8", "0x040300"))}


def blocks_of(functions: dict[str, tuple[tuple[str, str, str], ...]]) -> dict[str, Block]:
    return {owner: Block(listed) for owner, listed in functions.items()}


def with_vfio(facts: HostFacts, **functions: tuple[tuple[str, str, str], ...]) -> HostFacts:
    """``facts`` with these stacks' blocks in the vfio file (as written: no hand edit)."""
    content = render_vfio_file({**parse_blocks(facts.files[VFIO_FILE]), **blocks_of(functions)})
    return dataclasses.replace(facts, files={**facts.files, VFIO_FILE: content}, written={**facts.written, VFIO_FILE: content})


def same_model_stacks() -> HostFacts:
    facts = two_stacks()
    return dataclasses.replace(facts, files={**facts.files, VFIO_FILE: SAME_MODEL_BLOCKS}, written={**facts.written, VFIO_FILE: SAME_MODEL_BLOCKS})


HAND_EDITED_BLACKLIST = lambda: dataclasses.replace(  # noqa: E731
    with_files(prepared_host(), blacklist=prepared_host().files[BLACKLIST_FILE] + "blacklist radeon\n"), stale_temps=("/etc/default/.grub.ptg-tmp-1",))

# (case, facts, owner, options) -> (lines, originals forgotten, originals set aside, records: path -> what was last written)
UNDOS = [
    ("the last stack out restores every original", prepared_host, OWNER, {}, (
        ["update /etc/default/grub: restore the original, byte for byte", *REMOVED_OWN, *UNDO_REFRESH,
         f"{KEEPS_VFIO} (host.rebootOnDestroy is false)"], ALL_FOUR, (), dict.fromkeys(ALL_FOUR))),
    ("undo once more: nothing left", lambda: written(prepared_host(), plan_undo(prepared_host(), OWNER)), OWNER, {}, (
        ["ok: nothing to undo because proxmox-talos-gpu left nothing on this host for proxmox-talos-gpu/homelab"], (), (), {})),
    ("reboot on destroy, guests stopped as host.runningGuests says", lambda: dataclasses.replace(prepared_host(), guests=(CP,)), OWNER,
     {"reboot_on_destroy": True, "inputs": STOP}, (
        ["update /etc/default/grub: restore the original, byte for byte", *REMOVED_OWN, *UNDO_REFRESH, "reboot: host.rebootOnDestroy is true",
         STOPS, "  - 101 k8s-cp-1 (qemu), onboot"], ALL_FOUR, (), dict.fromkeys(ALL_FOUR))),
    ("reboot on destroy, but no reboot allowed", prepared_host, OWNER, {"reboot_on_destroy": True, "allow_reboot": False}, (
        ["update /etc/default/grub: restore the original, byte for byte", *REMOVED_OWN, *UNDO_REFRESH, KEEPS_VFIO], ALL_FOUR, (), dict.fromkeys(ALL_FOUR))),
    ("one of two stacks: only its block goes", two_stacks, "p/a", {}, (
        ["update /etc/modprobe.d/proxmox-talos-gpu-vfio.conf: remove the block of p/a; 1 other stack(s) keep theirs",
         "run `update-initramfs -u -k all`: the initramfs loads vfio-pci early; /etc/modprobe.d/proxmox-talos-gpu-vfio.conf changed",
         "ok: the kernel command line, blacklist and module list stay: stack(s) p/b still pass GPUs through",
         f"{KEEPS_VFIO} (host.rebootOnDestroy is false)"], (), (), {VFIO_FILE: ONLY_B})),
    ("one of two stacks passing the same model", same_model_stacks, "p/a", {}, (
        ["update /etc/modprobe.d/proxmox-talos-gpu-vfio.conf: remove the block of p/a; 1 other stack(s) keep theirs",
         "run `update-initramfs -u -k all`: the initramfs loads vfio-pci early; /etc/modprobe.d/proxmox-talos-gpu-vfio.conf changed",
         "ok: the kernel command line, blacklist and module list stay: stack(s) p/b still pass GPUs through",
         "note: 10de:1eb8 stay bound to vfio-pci: another stack passes through the same model",
         f"{KEEPS_VFIO} (host.rebootOnDestroy is false)"], (), (),
        {VFIO_FILE: ONLY_B.replace("20b5", "1eb8")})),
    ("a stack that has no block among others", two_stacks, "p/c", {}, (
        ["ok: nothing to undo because /etc/modprobe.d/proxmox-talos-gpu-vfio.conf has no block for p/c (other stacks: p/a, p/b)"], (), (), {})),
    ("a hand edit it would drop: refused", HAND_EDITED_BLACKLIST, OWNER, {}, (
        ["REFUSED: /etc/modprobe.d/proxmox-talos-gpu-blacklist.conf was edited by hand since proxmox-talos-gpu wrote it (`+blacklist radeon`); "
         "removing it would drop that. Move your lines to a file of your own in the same folder and re-run, or let this run replace them: "
         "set host.handEdits: overwrite (CLI: --hand-edits overwrite). Nothing was written."], (), (), {})),
    ("a hand edit dropped as host.handEdits allows", HAND_EDITED_BLACKLIST, OWNER, {"hand_edits_policy": "overwrite"}, (
        ["update /etc/default/grub: restore the original, byte for byte",
         "delete /etc/modprobe.d/proxmox-talos-gpu-blacklist.conf: created by proxmox-talos-gpu: remove it; drops the hand edits "
         "(+blacklist radeon) as host.handEdits is overwrite", *REMOVED_OWN[1:],
         "remove /etc/default/.grub.ptg-tmp-1: temp file left by an interrupted run", *UNDO_REFRESH,
         f"{KEEPS_VFIO} (host.rebootOnDestroy is false)"], ALL_FOUR, (), dict.fromkeys(ALL_FOUR))),
    ("a file of its own without a recorded original", lambda: dataclasses.replace(prepared_host(), originals={
        path: original for path, original in prepared_host().originals.items() if path != VFIO_FILE}), OWNER, {}, (
        ["update /etc/default/grub: restore the original, byte for byte", REMOVED_OWN[0],
         "delete /etc/modprobe.d/proxmox-talos-gpu-vfio.conf: a proxmox-talos-gpu file without a recorded original: remove it",
         REMOVED_OWN[2], *UNDO_REFRESH, f"{KEEPS_VFIO} (host.rebootOnDestroy is false)"],
        ALL_FOUR, (), dict.fromkeys(ALL_FOUR))),
    ("a file already back to its original", lambda: with_files(prepared_host(), grub=GRUB), OWNER, {}, (
        [*REMOVED_OWN, INITRAMFS, "ok: /etc/default/grub is already as it was before proxmox-talos-gpu",
         f"{KEEPS_VFIO} (host.rebootOnDestroy is false)"], ALL_FOUR, (), dict.fromkeys((*OWNED, GRUB_DEFAULT)))),
    ("the command line changed by hand: its parameters come out, the original is set aside",
     lambda: with_files(prepared_host(), grub=OURS.replace("GRUB_TIMEOUT=5", "GRUB_TIMEOUT=3")), OWNER, {}, (
        [f"update /etc/default/grub: {TAKE_OUT.format('intel_iommu=on iommu=pt')}", *REMOVED_OWN, *UNDO_REFRESH,
         f"note: {BY_HAND}", f"{KEEPS_VFIO} (host.rebootOnDestroy is false)"], OWNED, (GRUB_DEFAULT,), dict.fromkeys(ALL_FOUR))),
    ("the command line changed by hand and its parameters already gone", lambda: with_files(prepared_host(), grub=TIMEOUT_3), OWNER, {}, (
        [*REMOVED_OWN, INITRAMFS, f"note: {BY_HAND}", f"{KEEPS_VFIO} (host.rebootOnDestroy is false)"], OWNED, (GRUB_DEFAULT,),
        dict.fromkeys((*OWNED, GRUB_DEFAULT)))),
    ("a host that also has an /etc/kernel/cmdline of its own: both come back", lambda: dataclasses.replace(
        prepared_host(), originals={**prepared_host().originals, KERNEL_CMDLINE: ZFS_CMDLINE},
        files={**prepared_host().files, KERNEL_CMDLINE: ZFS_CMDLINE.replace("\n", " iommu=pt\n")}), OWNER, {}, (
        ["update /etc/default/grub: restore the original, byte for byte", "update /etc/kernel/cmdline: restore the original, byte for byte",
         *REMOVED_OWN, INITRAMFS, "run `update-grub`: grub-bios boot configuration: /etc/default/grub, /etc/kernel/cmdline changed",
         f"{KEEPS_VFIO} (host.rebootOnDestroy is false)"], (GRUB_DEFAULT, KERNEL_CMDLINE, *OWNED), (),
        dict.fromkeys((GRUB_DEFAULT, KERNEL_CMDLINE, *OWNED)))),
    ("a hand edit in a file without a recorded original: refused", lambda: dataclasses.replace(
        with_files(prepared_host(), vfio=prepared_host().files[VFIO_FILE] + "options vfio-pci disable_vga=1\n"),
        originals={path: original for path, original in prepared_host().originals.items() if path != VFIO_FILE}), OWNER, {}, (
        ["REFUSED: /etc/modprobe.d/proxmox-talos-gpu-vfio.conf was edited by hand since proxmox-talos-gpu wrote it (`+options vfio-pci disable_vga=1`); "
         "removing it would drop that. Move your lines to a file of your own in the same folder and re-run, or let this run replace them: "
         "set host.handEdits: overwrite (CLI: --hand-edits overwrite). Nothing was written."], (), (), {})),
    ("the command line file deleted since: its original comes back", lambda: with_files(prepared_host(), grub=None), OWNER, {}, (
        ["create /etc/default/grub: restore the original, byte for byte", *REMOVED_OWN, *UNDO_REFRESH, f"{KEEPS_VFIO} (host.rebootOnDestroy is false)"],
        ALL_FOUR, (), dict.fromkeys(ALL_FOUR))),
    ("an earlier copy of its own file saved as the original (state lost since): removed all the same", lambda: dataclasses.replace(
        prepared_host(), originals={**prepared_host().originals, BLACKLIST_FILE: "# Managed by proxmox-talos-gpu: an earlier version\n"}), OWNER, {}, (
        ["update /etc/default/grub: restore the original, byte for byte", *REMOVED_OWN, *UNDO_REFRESH,
         f"{KEEPS_VFIO} (host.rebootOnDestroy is false)"], ALL_FOUR, (), dict.fromkeys(ALL_FOUR))),
    ("back to the original, its record left as .prev by an interrupted run", lambda: dataclasses.replace(
        with_files(prepared_host(), grub=GRUB), written={**{path: text for path, text in prepared_host().written.items() if path != GRUB_DEFAULT},
                                                        GRUB_DEFAULT + ".prev": OURS}), OWNER, {}, (
        [*REMOVED_OWN, INITRAMFS, "ok: /etc/default/grub is already as it was before proxmox-talos-gpu",
         f"{KEEPS_VFIO} (host.rebootOnDestroy is false)"], ALL_FOUR, (), dict.fromkeys((*OWNED, GRUB_DEFAULT)))),
    ("reboot on destroy withheld while other guests run", lambda: dataclasses.replace(prepared_host(), guests=(CP,)), OWNER,
     {"reboot_on_destroy": True, "inputs": MINE}, (
        ["update /etc/default/grub: restore the original, byte for byte", *REMOVED_OWN, *UNDO_REFRESH, "reboot: host.rebootOnDestroy is true",
         STOPS, "  - 101 k8s-cp-1 (qemu), onboot",
         "reboot withheld (host.runningGuests: refuse): " + WITHHELD.format(count=1, mine=" besides this stack's VM 1105", labels="101 k8s-cp-1 (qemu)",
                                                                              shutdowns="`qm shutdown 101`")], ALL_FOUR, (), dict.fromkeys(ALL_FOUR))),
    ("no reboot on destroy: no guest is stopped", lambda: dataclasses.replace(prepared_host(), guests=(CP,)), OWNER, {"inputs": MINE}, (
        ["update /etc/default/grub: restore the original, byte for byte", *REMOVED_OWN, *UNDO_REFRESH, f"{KEEPS_VFIO} (host.rebootOnDestroy is false)"],
        ALL_FOUR, (), dict.fromkeys(ALL_FOUR))),
    ("changed by hand since: the record says which parameters were its own", lambda: dataclasses.replace(
        with_files(prepared_host(), grub=grub_value("quiet intel_iommu=on iommu=pt", TIMEOUT_3)), written={**prepared_host().written, GRUB_DEFAULT: AMD_OURS}),
     OWNER, {}, (
        [f"update /etc/default/grub: {TAKE_OUT.format('iommu=pt')}", *REMOVED_OWN, *UNDO_REFRESH,
         "note: /etc/default/grub: kept intel_iommu=on: changed by hand since proxmox-talos-gpu set intel_iommu", f"note: {BY_HAND}",
         f"{KEEPS_VFIO} (host.rebootOnDestroy is false)"], OWNED, (GRUB_DEFAULT,), dict.fromkeys(ALL_FOUR))),
    ("one of three stacks", lambda: with_vfio(two_stacks(), **{"p/c": (("0000:d8:00.0", "10de:2236", "0x030200"),)}), "p/a", {}, (
        ["update /etc/modprobe.d/proxmox-talos-gpu-vfio.conf: remove the block of p/a; 2 other stack(s) keep theirs",
         "run `update-initramfs -u -k all`: the initramfs loads vfio-pci early; /etc/modprobe.d/proxmox-talos-gpu-vfio.conf changed",
         "ok: the kernel command line, blacklist and module list stay: stack(s) p/b, p/c still pass GPUs through",
         f"{KEEPS_VFIO} (host.rebootOnDestroy is false)"], (), (),
        {VFIO_FILE: render_vfio_file({"p/b": Block((("0000:af:00.0", "10de:20b5", "0x030200"),)),
                                      "p/c": Block((("0000:d8:00.0", "10de:2236", "0x030200"),))})})),
    ("a hand edit among the blocks of others: refused, the shared models still named", lambda: with_files(
        with_vfio(two_stacks(), **SHARED_CARDS), vfio=render_vfio_file(blocks_of(SHARED_CARDS)) + "options vfio-pci disable_vga=1\n"), "p/a", {}, (
        ["REFUSED: /etc/modprobe.d/proxmox-talos-gpu-vfio.conf was edited by hand since proxmox-talos-gpu wrote it (`+options vfio-pci disable_vga=1`); "
         "removing this block would drop that. Move your lines to a file of your own in the same folder and re-run, or let this run replace "
         "them: set host.handEdits: overwrite (CLI: --hand-edits overwrite). Nothing was written.",
         "note: 10de:10f8, 10de:1eb8 stay bound to vfio-pci: another stack passes through the same model"], (), (), {})),
    ("hand edits dropped: every one named", lambda: with_files(
        prepared_host(), blacklist=prepared_host().files[BLACKLIST_FILE] + f"blacklist radeon\n{LONG_LINE}\n"), OWNER, {"hand_edits_policy": "overwrite"}, (
        ["update /etc/default/grub: restore the original, byte for byte",
         f"delete /etc/modprobe.d/proxmox-talos-gpu-blacklist.conf: created by proxmox-talos-gpu: remove it; drops the hand edits (+blacklist radeon; "
         f"+{LONG_LINE[:99]}...) as host.handEdits is overwrite", *REMOVED_OWN[1:], *UNDO_REFRESH,
         f"{KEEPS_VFIO} (host.rebootOnDestroy is false)"], ALL_FOUR, (), dict.fromkeys(ALL_FOUR))),
    ("its own files deleted by hand: the command line still comes back", lambda: dataclasses.replace(
        prepared_host(), files={**prepared_host().files, **dict.fromkeys(OWNED)}), OWNER, {}, (
        ["update /etc/default/grub: restore the original, byte for byte", "run `update-grub`: grub-bios boot configuration: /etc/default/grub changed",
         *(f"ok: {path} is already as it was before proxmox-talos-gpu" for path in OWNED), f"{KEEPS_VFIO} (host.rebootOnDestroy is false)"],
        ALL_FOUR, (), dict.fromkeys(ALL_FOUR))),
]


@pytest.mark.parametrize(("make", "owner", "options", "outcome"), [case[1:] for case in UNDOS], ids=[case[0] for case in UNDOS])
def test_undo_plans_every_file_and_record(make, owner, options, outcome):
    facts = make()
    plan = plan_undo(facts, owner, **options)
    assert (lines(plan), plan.forget_originals, plan.archive_originals, dict(plan.records)) == outcome
    assert plan.to_json()["owner"] == owner
    assert (plan.to_json()["reboot_reason"], plan.impact is None) == (("host.rebootOnDestroy is true", False) if plan.reboot else ("", True))
    assert [path for path, _ in plan.records] == list(outcome[3])  # in this order
    restored = {change.path: written(facts, plan).files[change.path] for change in plan.files if change.reason == EXACT}
    assert restored == {path: facts.originals[path] for path in restored}, "each original comes back byte for byte"
    if plan.changes_host and not plan.refused:
        assert not plan_undo(written(facts, plan), owner, **options).files, "undo once more writes nothing"


def test_undo_refuses_a_malformed_owner():
    with pytest.raises(PlanError) as error:
        plan_undo(applied_host(), "a b")
    assert str(error.value) == "owner 'a b' must be letters, digits, '.', '_', '-' and '/' (project/stack)"


# -- GRUB_CMDLINE_LINUX_DEFAULT as update-grub reads it ---------------------------------------

CFG = GRUB_D + "/50-local.cfg"
WANT = ["intel_iommu=on", "iommu=pt"]
QUIET = {GRUB_DEFAULT: 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'}

# (case, files) -> (the file that decides the value, its new content), and the value update-grub gets today
GRUB_EDITS = [
    ("double quotes", QUIET, (GRUB_DEFAULT, 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n'), "quiet"),
    ("single quotes", {GRUB_DEFAULT: "GRUB_CMDLINE_LINUX_DEFAULT='quiet splash'\n"},
     (GRUB_DEFAULT, "GRUB_CMDLINE_LINUX_DEFAULT='quiet splash intel_iommu=on iommu=pt'\n"), "quiet splash"),
    ("one unquoted word gets quotes", {GRUB_DEFAULT: "GRUB_CMDLINE_LINUX_DEFAULT=quiet\n"},
     (GRUB_DEFAULT, 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n'), "quiet"),
    ("empty quotes", {GRUB_DEFAULT: 'GRUB_CMDLINE_LINUX_DEFAULT=""\n'}, (GRUB_DEFAULT, 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on iommu=pt"\n'), ""),
    ("export, indented, CRLF", {GRUB_DEFAULT: '  export GRUB_CMDLINE_LINUX_DEFAULT="quiet"\r\n'},
     (GRUB_DEFAULT, '  export GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\r\n'), "quiet"),
    ("comments, a comment after the value, other variables", {GRUB_DEFAULT: (
        '  # GRUB_CMDLINE_LINUX_DEFAULT="$(not read)"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet" # keep "quiet"\n#GRUB_CMDLINE_LINUX_DEFAULT+=x\n'
        'GRUB_CMDLINE_LINUX+="x"\nreadonly GRUB_CMDLINE_LINUX_DEFAULT\n')},
     (GRUB_DEFAULT, '  # GRUB_CMDLINE_LINUX_DEFAULT="$(not read)"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt" # keep "quiet"\n'
                    '#GRUB_CMDLINE_LINUX_DEFAULT+=x\nGRUB_CMDLINE_LINUX+="x"\nreadonly GRUB_CMDLINE_LINUX_DEFAULT\n'), "quiet"),
    ("a later line extends it with what is wanted", {**QUIET, CFG: 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT iommu=pt"\n'},
     (GRUB_DEFAULT, 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on"\n'), "quiet iommu=pt"),
    ("a later line prepends what is wanted", {**QUIET, CFG: 'GRUB_CMDLINE_LINUX_DEFAULT="iommu=pt ${GRUB_CMDLINE_LINUX_DEFAULT}"\n'},
     (GRUB_DEFAULT, 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on"\n'), "iommu=pt quiet"),
    ("a later line that only repeats it", {**QUIET, CFG: "GRUB_CMDLINE_LINUX_DEFAULT=$GRUB_CMDLINE_LINUX_DEFAULT\n"},
     (GRUB_DEFAULT, 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n'), "quiet"),
    ("never set: a line is added", {GRUB_DEFAULT: "GRUB_TIMEOUT=5"}, (GRUB_DEFAULT, 'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on iommu=pt"\n'), ""),
    ("never set, a file ending in a line break", {GRUB_DEFAULT: "GRUB_TIMEOUT=5\n"},
     (GRUB_DEFAULT, 'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on iommu=pt"\n'), ""),
    ("the first wanted parameter there already", {GRUB_DEFAULT: 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on"\n'},
     (GRUB_DEFAULT, 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n'), "quiet intel_iommu=on"),
    ("never set, an empty file", {GRUB_DEFAULT: ""}, (GRUB_DEFAULT, 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on iommu=pt"\n'), ""),
    ("grub.d in byte order, *.cfg only, the last setting wins", {
        GRUB_DEFAULT: 'GRUB_CMDLINE_LINUX_DEFAULT="a"\n', f"{GRUB_D}/9-b.cfg": 'GRUB_CMDLINE_LINUX_DEFAULT="nine"\n',
        f"{GRUB_D}/10-a.cfg": 'GRUB_CMDLINE_LINUX_DEFAULT="ten"\n', f"{GRUB_D}/Z.cfg": 'GRUB_CMDLINE_LINUX_DEFAULT="Z"\n',
        f"{GRUB_D}/a.cfg": None, f"{GRUB_D}/x.cfg.bak": 'GRUB_CMDLINE_LINUX_DEFAULT="bak"\n', "/etc/default/grubx.cfg": 'GRUB_CMDLINE_LINUX_DEFAULT="no"\n'},
     (f"{GRUB_D}/Z.cfg", 'GRUB_CMDLINE_LINUX_DEFAULT="Z intel_iommu=on iommu=pt"\n'), "Z"),
    ("already there, in another order", {GRUB_DEFAULT: 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt intel_iommu=on"\n'},
     (GRUB_DEFAULT, 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt intel_iommu=on"\n'), "quiet iommu=pt intel_iommu=on"),
]


@pytest.mark.parametrize(("files", "edited", "effective"), [case[1:] for case in GRUB_EDITS], ids=[case[0] for case in GRUB_EDITS])
def test_grub_edit_changes_only_the_value_that_decides(files, edited, effective):
    assert edit_grub_files(files, WANT) == edited
    assert grub_cmdline(files).effective == effective
    assert set(WANT) <= set(grub_cmdline({**files, edited[0]: edited[1]}).effective.split()), "update-grub then gets every wanted parameter"


def test_one_unquoted_word_stays_unquoted():
    assert edit_grub_files({GRUB_DEFAULT: "GRUB_CMDLINE_LINUX_DEFAULT=\n"}, ["iommu=pt"]) == (GRUB_DEFAULT, "GRUB_CMDLINE_LINUX_DEFAULT=iommu=pt\n")


LINE_2 = "/etc/default/grub line 2 ({line}) "
GRUB_REFUSALS = [
    ('GRUB_CMDLINE_LINUX_DEFAULT+=" iommu=pt"', "uses +=, which update-grub's /bin/sh does not understand"),
    ("export GRUB_CMDLINE_LINUX_DEFAULT+=x", "uses +=, which update-grub's /bin/sh does not understand"),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet', "has an unterminated quote"),
    ("GRUB_CMDLINE_LINUX_DEFAULT='quiet", "has an unterminated quote"),
    ('GRUB_CMDLINE_LINUX_DEFAULT="a\\"b"', "continues after the value with shell syntax this program will not rewrite"),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"#c', "continues after the value with shell syntax this program will not rewrite"),
    ("GRUB_CMDLINE_LINUX_DEFAULT=quiet;x", "continues after the value with shell syntax this program will not rewrite"),
    ('GRUB_CMDLINE_LINUX_DEFAULT="`x`"', "uses shell syntax this program will not rewrite"),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet\\ x"', "uses shell syntax this program will not rewrite"),
    ("GRUB_CMDLINE_LINUX_DEFAULT='$GRUB_CMDLINE_LINUX_DEFAULT x'", "uses shell syntax this program will not rewrite"),
    ('GRUB_CMDLINE_LINUX_DEFAULT="$A $GRUB_CMDLINE_LINUX_DEFAULT"', "uses shell expansion this program will not rewrite"),
    ('GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT $A"', "uses shell expansion this program will not rewrite"),
    ('GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULTx"', "uses shell expansion this program will not rewrite"),
]


@pytest.mark.parametrize(("line", "why"), GRUB_REFUSALS)
def test_grub_shell_it_will_not_rewrite_is_refused_naming_file_and_line(line, why):
    with pytest.raises(PlanError) as error:
        edit_grub_files({GRUB_DEFAULT: f"GRUB_TIMEOUT=5\n{line}\n"}, ["iommu=pt"])
    assert str(error.value) == LINE_2.format(line=line.replace("\\", "\\\\")) + why


def test_grub_refusals_name_the_line_shortened_and_the_file_that_extends():
    long = 'GRUB_CMDLINE_LINUX_DEFAULT="' + "x" * 100 + ' $(y)"'
    with pytest.raises(PlanError) as error:
        edit_grub_files({GRUB_DEFAULT: f"GRUB_TIMEOUT=5\n{long}\n"}, ["iommu=pt"])
    assert str(error.value) == LINE_2.format(line=long[:80] + "...") + "uses shell expansion this program will not rewrite"
    with pytest.raises(PlanError) as error:
        edit_grub_files({**QUIET, CFG: '# x\nGRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT iommu=soft"\n'}, WANT)
    assert str(error.value) == (f"{CFG} line 2 adds iommu=soft to GRUB_CMDLINE_LINUX_DEFAULT after /etc/default/grub sets it; change it "
                                "to iommu=pt (or remove it) and re-run")
    with pytest.raises(PlanError) as error:
        edit_grub_files({GRUB_DEFAULT: "GRUB_TIMEOUT=5\n", CFG: 'x=1\nGRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT quiet"\n'}, WANT)
    assert str(error.value) == (f"GRUB_CMDLINE_LINUX_DEFAULT is only extended ({CFG} line 2), never set; set it once in /etc/default/grub "
                                '(e.g. GRUB_CMDLINE_LINUX_DEFAULT="quiet") and re-run')


@pytest.mark.parametrize(("facts", "path"), [
    ({"bootloader": "systemd-boot"}, KERNEL_CMDLINE),
    ({"bootloader": "grub-uefi"}, GRUB_DEFAULT),
    ({"files": {CFG: 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'}}, CFG),
    ({"files": {CFG: 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT x"\n'}}, GRUB_DEFAULT),
])
def test_the_file_that_decides_the_command_line(facts, path):
    assert cmdline_file(host(**facts)) == path


# -- what the files hold -----------------------------------------------------------------------

def test_every_file_of_a_four_function_card_written_out():
    card = [t4(members=("0000:3a:00.0", "0000:3b:00.1", "0000:3b:00.2", "0000:3b:00.3")), AUDIO, USB, UCSI]
    plan = plan_host(T4_INPUTS, host(kernel=K68, iommu=True, gpu=card), OWNER)
    assert {change.path: (change.before, change.after) for change in plan.files} == {
        BLACKLIST_FILE: (None, "# Managed by proxmox-talos-gpu: keep host GPU drivers off passed-through GPUs.\nblacklist nouveau\nblacklist nvidia\n"
                               "blacklist nvidia_drm\nblacklist nvidia_modeset\nblacklist nvidia_uvm\nblacklist nvidiafb\n"),
        MODULES_LOAD_FILE: (None, "# Managed by proxmox-talos-gpu: VFIO modules for PCI passthrough.\nvfio\nvfio_iommu_type1\nvfio_pci\n"),
        VFIO_FILE: (None, "# Managed by proxmox-talos-gpu: binds passed-through GPUs to vfio-pci.\n"
                          "# One block per stack; each stack edits only its own block, and the lines\n"
                          "# after the blocks are derived from all of them. Do not edit by hand.\n"
                          "# BEGIN proxmox-talos-gpu/homelab\n# function 0000:3b:00.0 10de:1eb8 0x030200\n# function 0000:3b:00.1 10de:10f8 0x040300\n"
                          "# function 0000:3b:00.2 10de:1ad8 0x0c0330\n# function 0000:3b:00.3 10de:1ad9 0x0c8000\n# END proxmox-talos-gpu/homelab\n"
                          "options vfio-pci ids=10de:10f8,10de:1ad8,10de:1ad9,10de:1eb8\n"
                          "softdep i2c_nvidia_gpu pre: vfio-pci\nsoftdep snd_hda_intel pre: vfio-pci\nsoftdep xhci_pci pre: vfio-pci\n"),
        GRUB_DEFAULT: (GRUB, GRUB.replace('"quiet"', '"quiet iommu=pt"'))}
    assert plan.records == tuple((change.path, change.after) for change in plan.files)
    assert (plan.wanted_cmdline, plan.functions) == (("iommu=pt",), ("0000:3b:00.0", "0000:3b:00.1", "0000:3b:00.2", "0000:3b:00.3"))


@pytest.mark.parametrize(("kernel", "modules"), [("5.15.158-2-pve", "vfio\nvfio_iommu_type1\nvfio_pci\nvfio_virqfd\n"),
                                                 ("6.1.10-1-pve", "vfio\nvfio_iommu_type1\nvfio_pci\nvfio_virqfd\n"),
                                                 ("6.2.16-3-pve", "vfio\nvfio_iommu_type1\nvfio_pci\n")])
def test_vfio_virqfd_is_loaded_only_before_kernel_6_2(kernel, modules):
    plan = plan_host(T4_INPUTS, host(kernel=kernel), OWNER)
    assert next(c.after for c in plan.files if c.path == MODULES_LOAD_FILE) == "# Managed by proxmox-talos-gpu: VFIO modules for PCI passthrough.\n" + modules


@pytest.mark.parametrize(("before", "after", "diff"), [
    ("a\nb", None, "--- a/etc/x\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n\\ No newline at end of file\n"),
    ("a\nb", "a\nc\n", "--- a/etc/x\n+++ b/etc/x\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n"),
    (None, "a", "--- /dev/null\n+++ b/etc/x\n@@ -0,0 +1 @@\n+a\n\\ No newline at end of file\n"),
])
def test_a_file_change_as_a_unified_diff(before, after, diff):
    assert FileChange("/etc/x", before, after, "why").diff() == diff


def test_a_deletion_renders_as_delete_with_its_diff():
    plan = HostPlan(owner=OWNER, files=(FileChange("/etc/x", "a\n", None, "why"),))
    assert plan.render().splitlines() == ["delete /etc/x: why", "    --- a/etc/x", "    +++ /dev/null", "    @@ -1 +0,0 @@", "    -a"]
    assert plan.to_json()["files"] == [{"path": "/etc/x", "action": "delete", "reason": "why", "diff": "--- a/etc/x\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n"}]


# -- inputs from config and through the provider's state ----------------------------------------

def test_inputs_from_config_carry_every_host_key_and_gpu():
    raw = stack_file_config()
    raw["host"] = {**raw["host"], "allowReboot": False, "rebootOnDestroy": True, "intelIommu": "on", "iommuPassthroughMode": False,
                   "runningGuests": "stop", "handEdits": "overwrite"}
    raw["gpus"] = [{"address": "0000:3b:00.0", "id": "10de:1eb8", "subsystemId": "10de:12a2", "iommuGroup": 30},
                   {"address": "0000:af:00.0", "id": "10de:20b5"}]
    inputs = inputs_from_config(parse_stack_config(raw))
    assert inputs == HostPrepInputs(
        gpus=(GpuSpec("0000:3b:00.0", "10de:1eb8", "10de:12a2", 30, 0), GpuSpec("0000:af:00.0", "10de:20b5", None, None, 1)),
        intel_iommu="on", iommu_passthrough=False, allow_reboot=False, reboot_on_destroy=True, running_guests="stop",
        own_vmids=(1105,), node_name="moody-good", hand_edits="overwrite")


@pytest.mark.parametrize(("added", "shown"), [
    ([f"blacklist extra{i}" for i in range(8)], "; ".join(f"`+blacklist extra{i}`" for i in range(8))),
    ([f"blacklist extra{i}" for i in range(9)], "; ".join(f"`+blacklist extra{i}`" for i in range(8)) + " and 1 more"),
    ([LONG_LINE], f"`+{LONG_LINE[:99]}...`"),
], ids=["eight edits: all named", "nine: eight named and the count", "a long line, shortened"])
def test_a_hand_edit_refusal_names_up_to_eight_lines(added, shown):
    applied = applied_host()
    edited = with_files(applied, blacklist=applied.files[BLACKLIST_FILE] + "".join(f"{line}\n" for line in added))
    assert lines(plan_host(T4_INPUTS, edited, OWNER))[0] == (
        f"REFUSED: {BLACKLIST_FILE} was edited by hand since proxmox-talos-gpu wrote it ({shown}); rewriting it would drop that. Move your "
        "lines to a file of your own in the same folder and re-run, or let this run replace them: set host.handEdits: overwrite (CLI: "
        "--hand-edits overwrite). Nothing was written.")
    if len(added) == 1:
        overwrite = lines(plan_host(dataclasses.replace(T4_INPUTS, hand_edits="overwrite"), edited, OWNER))[0]
        assert overwrite == (f"update {BLACKLIST_FILE}: keep nouveau, nvidia, nvidia_drm, nvidia_modeset, nvidia_uvm, nvidiafb off the GPU so "
                             f"vfio-pci can claim it; replaces the hand edits (+{LONG_LINE[:99]}...) as host.handEdits is overwrite")


@pytest.mark.parametrize(("value", "wanted", "edited"), [
    ("iommu=pt quiet iommu=pt", ["iommu=pt"], "iommu=pt quiet iommu=pt"),
    ("quiet intel_iommu=on", ["intel_iommu=on", "iommu=pt"], "quiet intel_iommu=on iommu=pt"),
    ("quiet iommu=force=1", ["iommu=pt"], "quiet iommu=pt"),
], ids=["a parameter there already, even twice, is left alone", "each wanted parameter on its own", "a value holding '=' is one parameter"])
def test_edit_tokens_adds_or_replaces_each_wanted_parameter(value, wanted, edited):
    assert edit_tokens(value, wanted) == edited


@pytest.mark.parametrize(("path", "decides"), [
    (GRUB_DEFAULT, True), (KERNEL_CMDLINE, True), (CFG, True), (f"{GRUB_D}/50-local.cfg.bak", False), ("/etc/default/grub-old.cfg", False),
    (f"{GRUB_D}/50-local", False), (BLACKLIST_FILE, False),
])
def test_which_files_hold_the_kernel_command_line(path, decides):
    assert is_cmdline_file(path) is decides


def test_the_facts_script_looks_for_iommu_pt_only_when_it_is_wanted():
    assert static_tokens(T4_INPUTS) == ("iommu=pt",)
    assert static_tokens(dataclasses.replace(T4_INPUTS, iommu_passthrough=False)) == ()


def test_render_keeps_each_diff_line_whole():
    plan = HostPlan(owner=OWNER, files=(FileChange("/etc/a", None, "kept  \n", "why"), FileChange("/etc/b", None, "MAX\n", "why")))
    assert plan.render().splitlines() == ["create /etc/a: why", "    --- /dev/null", "    +++ b/etc/a", "    @@ -0,0 +1 @@", "    +kept  ",
                                          "create /etc/b: why", "    --- /dev/null", "    +++ b/etc/b", "    @@ -0,0 +1 @@", "    +MAX"]
    assert [(change["path"], change["action"]) for change in plan.to_json()["files"]] == [("/etc/a", "create"), ("/etc/b", "create")]
