"""Host facts: what the planner knows of the host (HostFacts, its PCI
functions and guests), the paths it reads and writes, and the JSON form.
The facts are read by components/hostprep/facts_read.py and parsed by
facts_boot.py, facts_pci.py and facts_guests.py.

Every fact is checked against its exact format before the planner sees it:
a value that does not look the way the kernel or Proxmox print it is
refused (``FactsError``), never guessed at, so nothing odd can reach a file
under /etc.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

STATE_DIR = "/var/lib/proxmox-talos-gpu"
GRUB_DEFAULT = "/etc/default/grub"
GRUB_D = "/etc/default/grub.d"  # *.cfg here are sourced after /etc/default/grub
KERNEL_CMDLINE = "/etc/kernel/cmdline"
BLACKLIST_FILE = "/etc/modprobe.d/proxmox-talos-gpu-blacklist.conf"
VFIO_FILE = "/etc/modprobe.d/proxmox-talos-gpu-vfio.conf"
MODULES_LOAD_FILE = "/etc/modules-load.d/proxmox-talos-gpu-vfio.conf"
ETC_MODULES = "/etc/modules"
OWNED_FILES = (BLACKLIST_FILE, VFIO_FILE, MODULES_LOAD_FILE)  # files this program creates
MANAGED_FILES = (GRUB_DEFAULT, KERNEL_CMDLINE, *OWNED_FILES)
READ_FILES = (*MANAGED_FILES, ETC_MODULES)
TEMP_DIRS = ("/etc/default", "/etc/kernel", "/etc/modprobe.d", "/etc/modules-load.d", STATE_DIR)
GUEST_MODES = ("never", "auto", "always")  # when the facts script reads the guests

ADDRESS = r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]"
CPU_VENDORS = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}


class FactsError(RuntimeError):
    """The facts script failed or printed something unreadable."""


def shown(value: str, limit: int = 60) -> str:
    """A host-supplied value for a message: control characters escaped, truncated."""
    text = value.encode("unicode_escape", "backslashreplace").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."


def parse_kernel_version(release: str) -> tuple[int, int]:
    """``6.8.12-4-pve`` -> (6, 8)."""
    match = re.match(r"^(\d+)\.(\d+)", release.strip())
    if not match:
        raise FactsError(f"cannot read a kernel version from {shown(release)!r}")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class PciFunction:
    address: str
    vendor_device: str  # "10de:1eb8"
    class_code: str  # "0x030200"
    subsystem_id: str | None  # "10de:12a2"
    driver: str | None
    iommu_group: int | None
    group_members: tuple[str, ...] = ()  # other devices in the same IOMMU group
    boot_vga: bool = False  # sysfs boot_vga is 1: the firmware booted with this VGA device (the host's console)
    driver_override: str = ""  # sysfs driver_override ("" when the kernel prints "(null)")

    @property
    def is_bridge(self) -> bool:
        return self.class_code.startswith("0x0604")

    @property
    def kind(self) -> str:
        return _CLASS_NAMES.get(self.class_code[2:6], _CLASS_NAMES.get(self.class_code[2:4], f"class {self.class_code}"))


_CLASS_NAMES = {
    "0300": "VGA controller", "0302": "3D controller", "0403": "audio device", "0c03": "USB controller",
    "0c80": "serial bus controller", "0200": "Ethernet controller", "0604": "PCI bridge", "0106": "SATA controller",
    "0108": "NVMe controller", "02": "network controller", "01": "storage controller", "03": "display controller",
}


@dataclass(frozen=True)
class Guest:
    """A VM or container on this Proxmox node (pvesh /cluster/resources)."""

    vmid: int
    name: str
    type: str  # "qemu" | "lxc"
    status: str  # "running", "stopped", ...
    onboot: bool = False  # `onboot: 1` in its config: Proxmox starts it at boot
    hastate: str = ""  # /cluster/resources `hastate`: the HA manager's state of a HA resource ("" = not HA-managed)
    node: str = ""  # the node it is on (set when guests are read cluster-wide)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def label(self) -> str:
        return f"{self.vmid} {self.name or '(no name)'} ({self.type})"

    @property
    def tool(self) -> str:
        return "qm" if self.type == "qemu" else "pct"


@dataclass(frozen=True)
class HostFacts:
    cpu_vendor: str  # "intel" | "amd"
    kernel_release: str
    bootloader: str  # "grub-bios" | "grub-uefi" | "systemd-boot"
    cmdline: str
    iommu_active: bool
    functions: dict[str, PciFunction]  # functions of the configured GPU slots
    files: dict[str, str | None]  # managed (and read-only context) files; None = absent
    devices: dict[str, PciFunction] = field(default_factory=dict)  # every PCI device
    boot_tool_managed: bool = False  # proxmox-boot-tool syncs the ESP(s)
    bootloader_evidence: str = ""
    boot_id: str = ""
    originals: dict[str, str | None] = field(default_factory=dict)  # saved before the first change; None = was absent
    pending: tuple[str, ...] = ()  # commands owed by an interrupted run
    stale_temps: tuple[str, ...] = ()
    foreign_vfio_options: tuple[tuple[str, str], ...] = ()  # (file, line) setting vfio-pci options elsewhere
    bootloader_problem: str = ""  # the bootloader evidence disagrees or cannot be read: refuse
    written: dict[str, str] = field(default_factory=dict)  # what this program last wrote to each file
    guests: tuple[Guest, ...] | None = None  # None: not read (not needed, or the read failed)
    guests_problem: str = ""  # why the guests could not be read
    pve_node: str = ""  # this Proxmox node's name (/etc/pve/local)
    system_state: str = ""  # `systemctl is-system-running`: "stopping" while a reboot shuts down
    cordoned: tuple[str, ...] = ()  # Kubernetes nodes an earlier run cordoned and has not uncordoned yet
    holders: tuple[tuple[int, str, str], ...] = ()  # (pid, device, command) of processes holding /dev/nvidia* or /dev/vfio/* open
    bound: dict[str, str] = field(default_factory=dict)  # function -> its driver before this program bound it to vfio-pci live
    ha_policy: str = "conditional"  # datacenter.cfg `ha: shutdown_policy` (pve-cluster's default: conditional)
    ha_policy_note: str = ""  # the setting could not be used as it is (pve-ha-manager then falls back to conditional)

    @property
    def kernel_version(self) -> tuple[int, int]:
        return parse_kernel_version(self.kernel_release)

    def slot_functions(self, address: str) -> list[PciFunction]:
        """Every function of the slot holding ``address`` (0000:3b:00.*)."""
        slot = address.rsplit(".", 1)[0]
        return [fn for addr, fn in sorted(self.functions.items()) if addr.rsplit(".", 1)[0] == slot]

    @property
    def grub_d_files(self) -> list[str]:
        """/etc/default/grub.d/*.cfg present, in the order update-grub sources them."""
        return sorted((p for p, c in self.files.items() if p.startswith(GRUB_D + "/") and c is not None), key=lambda p: p.encode())


def facts_to_json(facts: HostFacts) -> dict[str, Any]:
    """HostFacts as plain JSON (``python -m components.hostprep facts --json``)."""
    data = dataclasses.asdict(facts)
    data["kernel_version"] = list(facts.kernel_version)
    return data


def facts_from_json(data: dict[str, Any]) -> HostFacts:
    """The inverse of :func:`facts_to_json`."""
    def fn(item: dict[str, Any]) -> PciFunction:
        return PciFunction(**{**item, "group_members": tuple(item.get("group_members", ()))})

    fields = {f.name for f in dataclasses.fields(HostFacts)}
    values = {key: value for key, value in data.items() if key in fields}
    values["functions"] = {a: fn(item) for a, item in data.get("functions", {}).items()}
    values["devices"] = {a: fn(item) for a, item in data.get("devices", {}).items()}
    for key in ("pending", "stale_temps", "cordoned"):
        values[key] = tuple(data.get(key, ()))
    values["holders"] = tuple(tuple(item) for item in data.get("holders", ()))
    values["foreign_vfio_options"] = tuple(tuple(item) for item in data.get("foreign_vfio_options", ()))
    if data.get("guests") is not None:
        values["guests"] = tuple(Guest(**item) for item in data["guests"])
    return HostFacts(**values)


