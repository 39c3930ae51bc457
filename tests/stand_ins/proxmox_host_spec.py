"""What a simulated Proxmox host (tests/stand_ins/proxmox_host.py) is made
of: its devices, guests and faults (``SimSpec``), the PCI devices every host
has and the GPUs tests add (``t4``, ``consumer_card``), and the files a fresh
install has (/etc/default/grub, /etc/kernel/cmdline, /etc/modules).

Standard library only: the stand-ins import this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GRUB_DEFAULT = """\
# If you change this file, run 'update-grub' afterwards to update
# /boot/grub/grub.cfg.
# For full documentation of the options in this file, see:
#   info -f grub -n 'Simple configuration'

GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR="Proxmox VE"
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX=""

# Uncomment to disable graphical terminal
#GRUB_TERMINAL=console
"""
KERNEL_CMDLINE = "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n"
ETC_MODULES = "# /etc/modules: kernel modules to load at boot time.\n"
ESP_UUID = "31C2-3D7A"


@dataclass
class SimDevice:
    address: str
    vendor_device: str
    class_code: str  # "0x030200"
    subsystem: str | None = None
    driver: str | None = None  # the driver the host would bind without vfio
    group: int = 0
    boot_vga: bool = False  # the firmware booted with this VGA device (boot_vga = 1)


@dataclass
class SimGuest:
    vmid: int
    name: str
    type: str = "qemu"  # "qemu" | "lxc"
    status: str = "running"  # at creation
    onboot: bool = True
    node: str = ""  # "" = this node; another name = a guest elsewhere in the cluster
    starts: bool = True  # False: its start fails after a boot (it does not come back)
    ha: str = ""  # a Proxmox HA resource with this requested state ("started", "stopped", "ignored"); "" = not HA-managed


@dataclass
class SimSpec:
    cpu: str = "intel"  # "intel" | "amd"
    kernel: str = "6.5.13-5-pve"
    bootloader: str = "grub-bios"  # "grub-bios" | "grub-uefi" | "systemd-boot"
    boot_tool_managed: bool = False  # GRUB with ESPs proxmox-boot-tool keeps in sync (systemd-boot always is)
    iommu_firmware: bool = True
    devices: list[SimDevice] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # extra /etc files
    node: str = "pve5"
    ha_peer: str = ""  # another cluster node HA can migrate guests to (ha: shutdown_policy=migrate)
    guests: list[SimGuest] = field(default_factory=list)
    guest_start_delay: float = 0.2  # after sshd is back, onboot guests start
    guest_stop_seconds: float = 0.0  # each guest's shutdown on the way down (sshd stays up meanwhile)
    reboot_delay: float = 0.3
    never_return: bool = False
    reboot_mode: str = "ok"  # "ok" | "fail" (exit 1, dbus error) | "killed" (SIGKILL) | "noop" (exit 0, nothing happens)
    drop_on: dict[str, int] = field(default_factory=dict)  # tool -> call number that drops the connection
    hang_on: dict[str, int] = field(default_factory=dict)  # tool -> call number that never finishes
    enospc: str = ""  # base64 fails with ENOSPC writing a file whose host path starts with this (until <base>/enospc is emptied)
    probe_output: dict[str, list] = field(default_factory=dict)  # "efibootmgr"/"proxmox-boot-tool" -> [stdout, rc]

    @property
    def managed(self) -> bool:
        return self.bootloader == "systemd-boot" or self.boot_tool_managed


def t4(address: str = "0000:3b:00.0", group: int = 30) -> list[SimDevice]:
    return [SimDevice(address, "10de:1eb8", "0x030200", "10de:12a2", "nouveau", group)]


def consumer_card(address: str = "0000:01:00.0", group: int = 14) -> list[SimDevice]:
    slot = address.rsplit(".", 1)[0]
    return [
        SimDevice(f"{slot}.0", "10de:2204", "0x030000", "1458:403b", "nouveau", group),
        SimDevice(f"{slot}.1", "10de:1aef", "0x040300", "1458:403b", "snd_hda_intel", group),
    ]


def host_devices() -> list[SimDevice]:
    """What every simulated host has besides its GPUs."""
    return [
        SimDevice("0000:00:00.0", "8086:2020", "0x060000", "15d9:0998", None, 0),
        SimDevice("0000:00:01.0", "8086:2030", "0x060400", None, "pcieport", 1),
        SimDevice("0000:00:02.0", "8086:2031", "0x060400", None, "pcieport", 2),
        SimDevice("0000:05:00.0", "8086:1521", "0x020000", "15d9:1521", "igb", 5),
        SimDevice("0000:06:00.0", "144d:a808", "0x010802", "144d:a801", "nvme", 6),
    ]
