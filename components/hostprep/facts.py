"""Host facts: one remote script (one SSH round trip) and pure parsers.

The script prints sections ``@@ptg <name> [args]`` each followed by one line
of base64 (the section's exact bytes), so file contents survive byte for
byte and no output can be mistaken for a header.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Protocol

from components.hostprep.transport import TEMP_MARK, CommandResult

STATE_DIR = "/var/lib/proxmox-talos-gpu"
GRUB_DEFAULT = "/etc/default/grub"
KERNEL_CMDLINE = "/etc/kernel/cmdline"
BLACKLIST_FILE = "/etc/modprobe.d/proxmox-talos-gpu-blacklist.conf"
VFIO_FILE = "/etc/modprobe.d/proxmox-talos-gpu-vfio.conf"
MODULES_LOAD_FILE = "/etc/modules-load.d/proxmox-talos-gpu-vfio.conf"
ETC_MODULES = "/etc/modules"
MANAGED_FILES = (GRUB_DEFAULT, KERNEL_CMDLINE, BLACKLIST_FILE, VFIO_FILE, MODULES_LOAD_FILE)
READ_FILES = (*MANAGED_FILES, ETC_MODULES)
TEMP_DIRS = ("/etc/default", "/etc/kernel", "/etc/modprobe.d", "/etc/modules-load.d", STATE_DIR)

_ADDRESS = r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]"
_ID_LINE = re.compile(rf"/devices/({_ADDRESS})/(vendor|device|class|subsystem_vendor|subsystem_device):(.*)$")
_LINK_LINE = re.compile(rf"/devices/({_ADDRESS})/(driver|iommu_group) (.*)$")


class Runner(Protocol):
    def run_script(self, script: str, *, label: str, timeout: float | None = None) -> CommandResult: ...


class FactsError(RuntimeError):
    """The facts script failed or printed something unreadable."""


@dataclass(frozen=True)
class PciFunction:
    address: str
    vendor_device: str  # "10de:1eb8"
    class_code: str  # "0x030200"
    subsystem_id: str | None  # "10de:12a2"
    driver: str | None
    iommu_group: int | None
    group_members: tuple[str, ...] = ()  # other devices in the same IOMMU group

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
class HostFacts:
    cpu_vendor: str  # "intel" | "amd" | the raw vendor_id lowercased
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

    @property
    def kernel_version(self) -> tuple[int, int]:
        return parse_kernel_version(self.kernel_release)

    def slot_functions(self, address: str) -> list[PciFunction]:
        """Every function of the slot holding ``address`` (0000:3b:00.*)."""
        slot = address.rsplit(".", 1)[0]
        return [fn for addr, fn in sorted(self.functions.items()) if addr.rsplit(".", 1)[0] == slot]


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
    for key in ("pending", "stale_temps"):
        values[key] = tuple(data.get(key, ()))
    values["foreign_vfio_options"] = tuple(tuple(item) for item in data.get("foreign_vfio_options", ()))
    return HostFacts(**values)


# --------------------------------------------------------------------------
# The remote script (pure builder)
# --------------------------------------------------------------------------


def facts_script(root: str = "/") -> str:
    """POSIX sh that reads everything the planner needs, changing nothing."""
    prefix = root.rstrip("/")
    q = shlex.quote
    state = prefix + STATE_DIR
    lines = [
        f"R={q(prefix)}",
        f"S={q(state)}",
        "export LC_ALL=C",
        # A section's bytes go through base64 so nothing in them can look like a header.
        'sec() { name=$1; shift; out=$("$@" 2>&1); rc=$?; printf "@@ptg %s rc=%s\\n" "$name" "$rc"; printf "%s" "$out" | base64 -w0; echo; }',
        'fil() { if [ -f "$2" ]; then printf "@@ptg %s %s present\\n" "$1" "$3"; base64 -w0 < "$2"; echo; '
        'elif [ -e "$2.absent" ] && [ "$1" = original ]; then printf "@@ptg %s %s absent\\n" "$1" "$3"; echo; fi; }',
        "sec cpuinfo grep -m1 -E '^vendor_id' \"$R/proc/cpuinfo\"",
        "sec kernel cat \"$R/proc/sys/kernel/osrelease\"",
        "sec cmdline cat \"$R/proc/cmdline\"",
        "sec boot_id cat \"$R/proc/sys/kernel/random/boot_id\"",
        "sec efi sh -c '[ -d \"$1/sys/firmware/efi\" ] && echo yes || echo no' sh \"$R\"",
        "sec pbt proxmox-boot-tool status",
        "sec efibootmgr efibootmgr -v",
        "sec iommu_groups sh -c 'ls -1 \"$1/sys/kernel/iommu_groups\" 2>/dev/null | wc -l' sh \"$R\"",
        'D="$R/sys/bus/pci/devices"',
        'sec pci_ids grep -H . "$D"/*/vendor "$D"/*/device "$D"/*/class "$D"/*/subsystem_vendor "$D"/*/subsystem_device',
        # The links' targets name the driver and the group; one find, no fork per device.
        "sec pci_links find \"$D\"/*/driver \"$D\"/*/iommu_group -maxdepth 0 -printf '%p %l\\n'",
        "sec vfio_options sh -c 'grep -H -E \"^[[:space:]]*options[[:space:]]+vfio[-_]pci\" \"$1\"/etc/modprobe.d/*.conf' sh \"$R\"",
        "sec pending sh -c 'ls -1 \"$1/pending\" 2>/dev/null' sh \"$S\"",
        "sec temps sh -c 'for d in \"$@\"; do [ -d \"$d\" ] && find \"$d\" -name \"*" + TEMP_MARK + "*\" -type f; done' sh "
        + " ".join(q(prefix + d) for d in TEMP_DIRS),
    ]
    for path in READ_FILES:
        lines.append(f"fil file {q(prefix + path)} {q(path)}")
    for path in MANAGED_FILES:
        lines.append(f"fil original {q(state + '/originals' + path)} {q(path)}")
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


def gather_facts(transport: Runner, gpu_addresses: list[str], *, root: str = "/") -> HostFacts:
    """Read the host in one round trip and parse it."""
    result = transport.run_script(facts_script(root), label="read host facts", timeout=120)
    if not result.ok:
        raise FactsError(f"the facts script failed (rc={result.rc}): {result.stderr.strip()[:500]}")
    return parse_facts(result.stdout, gpu_addresses, root=root)


# --------------------------------------------------------------------------
# Parsers (pure)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    name: str
    args: tuple[str, ...]
    body: str


def split_sections(output: str) -> list[Section]:
    sections: list[Section] = []
    lines = output.split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith("@@ptg "):
            index += 1
            continue
        parts = line.split(" ")
        body_line = lines[index + 1] if index + 1 < len(lines) else ""
        try:
            body = base64.b64decode(body_line, validate=True).decode("utf-8", "surrogateescape")
        except ValueError:
            raise FactsError(f"unreadable facts output after {line!r}") from None
        sections.append(Section(parts[1], tuple(parts[2:]), body))
        index += 2
    return sections


def parse_cpu_vendor(text: str) -> str:
    """``vendor_id : GenuineIntel`` -> "intel"; AuthenticAMD -> "amd"."""
    value = text.split(":", 1)[1].strip() if ":" in text else text.strip()
    return {"GenuineIntel": "intel", "AuthenticAMD": "amd", "HygonGenuine": "amd"}.get(value, value.lower() or "unknown")


def parse_kernel_version(release: str) -> tuple[int, int]:
    """``6.8.12-4-pve`` -> (6, 8)."""
    match = re.match(r"^(\d+)\.(\d+)", release.strip())
    if not match:
        raise FactsError(f"cannot read a kernel version from {release!r}")
    return int(match.group(1)), int(match.group(2))


def parse_boot_tool_status(rc: int, text: str) -> list[str]:
    """Modes of the ESPs proxmox-boot-tool keeps in sync (["uefi"], ["grub"], [])."""
    if rc != 0:
        return []
    return re.findall(r"is configured with: (uefi|grub)\b", text)


def parse_efibootmgr_current(rc: int, text: str) -> str | None:
    """The loader file of the entry the host booted from, lowercased, or None
    (no EFI variables: a BIOS boot)."""
    if rc != 0 or "not supported" in text:
        return None
    current = re.search(r"^BootCurrent:\s*([0-9A-Fa-f]{4})", text, re.M)
    if not current:
        return ""
    entry = re.search(rf"^Boot{current.group(1)}\*?\s+(.*)$", text, re.M)
    if not entry:
        return ""
    file_match = re.search(r"File\(([^)]*)\)", entry.group(1))
    return (file_match.group(1) if file_match else entry.group(1)).lower()


def detect_bootloader(*, efi: bool, efibootmgr_rc: int, efibootmgr_out: str, pbt_rc: int, pbt_out: str,
                      kernel_cmdline_present: bool) -> tuple[str, bool, str]:
    """(bootloader, proxmox-boot-tool manages it, evidence) from the two
    tools' output, as pve-docs "Determine which Bootloader is Used" says."""
    modes = parse_boot_tool_status(pbt_rc, pbt_out)
    managed = bool(modes)
    loader = parse_efibootmgr_current(efibootmgr_rc, efibootmgr_out)
    if loader is None and not efi:
        return "grub-bios", managed, "no EFI variables (efibootmgr -v): legacy BIOS boot with GRUB"
    if loader:
        if "systemd" in loader:
            return "systemd-boot", managed, f"efibootmgr -v: booted from {loader}"
        if "grub" in loader or "shim" in loader:
            return "grub-uefi", managed, f"efibootmgr -v: booted from {loader}"
    if "uefi" in modes:
        return "systemd-boot", managed, "proxmox-boot-tool status: ESP configured with uefi (systemd-boot)"
    if "grub" in modes:
        return "grub-uefi", managed, "proxmox-boot-tool status: ESP configured with grub"
    if kernel_cmdline_present and managed:
        return "systemd-boot", managed, "/etc/kernel/cmdline present on a proxmox-boot-tool host"
    return "grub-uefi", managed, "UEFI boot without a systemd-boot entry: GRUB"


def parse_pci(ids_text: str, links_text: str) -> dict[str, PciFunction]:
    """``grep -H`` of the sysfs id files plus ``find -printf '%p %l'`` of the
    driver/iommu_group links -> every device, with group members filled in."""
    raw: dict[str, dict[str, str]] = {}
    for line in ids_text.splitlines():
        match = _ID_LINE.search(line)
        if match:
            raw.setdefault(match.group(1), {})[match.group(2)] = match.group(3).strip()
    for line in links_text.splitlines():
        match = _LINK_LINE.search(line)
        if match and match.group(1) in raw:
            raw[match.group(1)][match.group(2)] = match.group(3).strip().rstrip("/").rsplit("/", 1)[-1]
    groups: dict[int, list[str]] = {}
    for address, values in raw.items():
        if values.get("iommu_group", "").isdigit():
            groups.setdefault(int(values["iommu_group"]), []).append(address)
    devices = {}
    for address, values in sorted(raw.items()):
        group = int(values["iommu_group"]) if values.get("iommu_group", "").isdigit() else None
        sub_vendor, sub_device = _hex4(values.get("subsystem_vendor")), _hex4(values.get("subsystem_device"))
        devices[address] = PciFunction(
            address=address,
            vendor_device=f"{_hex4(values.get('vendor'))}:{_hex4(values.get('device'))}",
            class_code=values.get("class", "0x000000").lower(),
            subsystem_id=f"{sub_vendor}:{sub_device}" if sub_vendor and sub_device else None,
            driver=values.get("driver") or None,
            iommu_group=group,
            group_members=tuple(sorted(a for a in groups.get(group, []) if a != address)) if group is not None else (),
        )
    return devices


def _hex4(value: str | None) -> str:
    if not value:
        return ""
    return value.lower().removeprefix("0x").rjust(4, "0")


def parse_vfio_options(text: str, root: str = "/") -> tuple[tuple[str, str], ...]:
    """``grep -H`` lines ``<file>:options vfio-pci ...`` -> (file, line), root stripped."""
    prefix = root.rstrip("/")
    found = []
    for line in text.splitlines():
        path, sep, content = line.partition(":")
        if not sep:
            continue
        found.append((path[len(prefix):] if prefix and path.startswith(prefix) else path, content.strip()))
    return tuple(found)


def parse_facts(output: str, gpu_addresses: list[str], *, root: str = "/") -> HostFacts:
    """The whole facts script output -> HostFacts."""
    prefix = root.rstrip("/")
    sections = split_sections(output)
    named: dict[str, Section] = {}
    files: dict[str, str | None] = dict.fromkeys(READ_FILES)
    originals: dict[str, str | None] = {}
    for section in sections:
        if section.name == "file":
            files[section.args[0]] = section.body
        elif section.name == "original":
            originals[section.args[0]] = section.body if section.args[1] == "present" else None
        else:
            named[section.name] = section

    def body(name: str) -> str:
        return named[name].body if name in named else ""

    def rc(name: str) -> int:
        if name not in named:
            return 127
        value = next((arg for arg in named[name].args if arg.startswith("rc=")), "rc=0")
        return int(value[3:])

    for required in ("cpuinfo", "kernel", "cmdline"):
        if required not in named or rc(required) != 0:
            raise FactsError(f"the host did not report {required} (is this a Linux host? is the root prefix {root!r} right?)")
    bootloader, managed, evidence = detect_bootloader(
        efi=body("efi").strip() == "yes",
        efibootmgr_rc=rc("efibootmgr"), efibootmgr_out=body("efibootmgr"),
        pbt_rc=rc("pbt"), pbt_out=body("pbt"),
        kernel_cmdline_present=files.get(KERNEL_CMDLINE) is not None,
    )
    devices = parse_pci(body("pci_ids"), body("pci_links"))
    slots = {address.rsplit(".", 1)[0] for address in gpu_addresses}
    functions = {address: fn for address, fn in devices.items() if address.rsplit(".", 1)[0] in slots}
    temps = tuple(sorted(path[len(prefix):] if prefix else path for path in body("temps").splitlines() if path.strip()))
    groups = body("iommu_groups").strip()
    return HostFacts(
        cpu_vendor=parse_cpu_vendor(body("cpuinfo")),
        kernel_release=body("kernel").strip(),
        bootloader=bootloader,
        cmdline=body("cmdline").strip(),
        iommu_active=groups.isdigit() and int(groups) > 0,
        functions=functions,
        files=files,
        devices=devices,
        boot_tool_managed=managed,
        bootloader_evidence=evidence,
        boot_id=body("boot_id").strip(),
        originals=originals,
        pending=tuple(sorted(line.strip() for line in body("pending").splitlines() if line.strip())),
        stale_temps=temps,
        foreign_vfio_options=tuple(item for item in parse_vfio_options(body("vfio_options"), root) if item[0] != VFIO_FILE),
    )
