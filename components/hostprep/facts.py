"""Host facts: one remote script (one SSH round trip) and pure parsers.

The script prints sections ``@@ptg <name> [args]`` each followed by one line
of base64 (the section's exact bytes), so file contents survive byte for
byte and no output can be mistaken for a header.

Every fact is checked against its exact format before the planner sees it:
a value that does not look the way the kernel or Proxmox print it is
refused (``FactsError``), never guessed at, so nothing odd can reach a file
under /etc.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Protocol

from components.ssh.atomic import TEMP_MARK
from components.ssh.transport import CommandResult

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

_ADDRESS = r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]"
_ID_LINE = re.compile(rf"/devices/({_ADDRESS})/(vendor|device|class|subsystem_vendor|subsystem_device):(.*)$")
_LINK_LINE = re.compile(rf"/devices/({_ADDRESS})/(driver|iommu_group) (.*)$")
_ID_FORMATS = {  # sysfs prints these exactly so (drivers/pci/pci-sysfs.c)
    "vendor": (re.compile(r"0x[0-9a-fA-F]{4}"), "0x and 4 hex digits"),
    "device": (re.compile(r"0x[0-9a-fA-F]{4}"), "0x and 4 hex digits"),
    "subsystem_vendor": (re.compile(r"0x[0-9a-fA-F]{4}"), "0x and 4 hex digits"),
    "subsystem_device": (re.compile(r"0x[0-9a-fA-F]{4}"), "0x and 4 hex digits"),
    "class": (re.compile(r"0x[0-9a-fA-F]{6}"), "0x and 6 hex digits"),
}
_DRIVER_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,64}")
CPU_VENDORS = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}


class Runner(Protocol):
    def run_script(self, script: str, *, label: str, timeout: float | None = None) -> CommandResult: ...


class FactsError(RuntimeError):
    """The facts script failed or printed something unreadable."""


def shown(value: str, limit: int = 60) -> str:
    """A host-supplied value for a message: control characters escaped, truncated."""
    text = value.encode("unicode_escape", "backslashreplace").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."


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


# --------------------------------------------------------------------------
# The remote script (pure builder)
# --------------------------------------------------------------------------


def facts_script(root: str = "/", *, slots: tuple[str, ...] = (), want_tokens: tuple[str, ...] = (), guests: str = "never") -> str:
    """POSIX sh that reads everything the planner needs, changing nothing.

    ``guests``: "always" reads the guests (pvesh takes about a second);
    "auto" reads them only when the running host may need a reboot (a
    function of ``slots`` not on vfio-pci, no IOMMU groups, or a token of
    ``want_tokens`` missing from /proc/cmdline), so a converged host stays
    one fast exec; "never" skips them.
    """
    if guests not in GUEST_MODES:
        raise ValueError(f"guests must be one of {GUEST_MODES}")
    prefix = root.rstrip("/")
    q = shlex.quote
    state = prefix + STATE_DIR
    lines = [
        f"R={q(prefix)}",
        f"S={q(state)}",
        "export LC_ALL=C",
        # A section's bytes go through base64 so nothing in them can look like a header.
        'sec() { name=$1; shift; out=$("$@" 2>&1); rc=$?; printf "@@ptg %s rc=%s\\n" "$name" "$rc"; printf "%s" "$out" | base64 -w0; echo; }',
        # raw: the bytes straight into base64 (a $(...) would drop NUL bytes and so hide them).
        'raw() { name=$1; shift; printf "@@ptg %s rc=0\\n" "$name"; "$@" 2>/dev/null | base64 -w0; echo; }',
        'fil() { if [ -f "$2" ]; then printf "@@ptg %s %s present\\n" "$1" "$3"; base64 -w0 < "$2"; echo; fi; }',
        # Saved originals and written records, whatever paths they are for.
        'rec() { [ -d "$S/$2" ] || return 0; find "$S/$2" -type f | sort | while IFS= read -r f; do p=${f#"$S/$2"}; '
        f'case $p in *{TEMP_MARK}*) ;; *.absent) printf "@@ptg %s %s absent\\n\\n" "$1" "${{p%.absent}}";; '
        '*) printf "@@ptg %s %s present\\n" "$1" "$p"; base64 -w0 < "$f"; echo;; esac; done; }',
        "vfio_options() { for f in \"$R\"/etc/modprobe.d/*.conf; do [ -f \"$f\" ] || continue; "
        "grep -a -H -E '^[[:space:]]*options[[:space:]]+vfio[-_]pci' \"$f\"; done; return 0; }",
        # Processes holding a GPU (/dev/nvidia*) or a passed-through group (/dev/vfio/N) open: one find, not a fork per fd.
        "holders() { find \"$R\"/proc/[0-9]*/fd -maxdepth 1 \\( -lname '/dev/nvidia*' -o -lname '/dev/vfio/*' \\) -printf '%h %l\\n' "
        "2>/dev/null | while read -r d l; do p=${d%/fd}; printf '%s %s %s\\n' \"${p##*/}\" \"$l\" \"$(cat \"$p/comm\" 2>/dev/null)\"; done; return 0; }",
        "onboot() { for f in \"$R\"/etc/pve/qemu-server/*.conf \"$R\"/etc/pve/lxc/*.conf; do [ -f \"$f\" ] || continue; "
        "awk -v f=\"$f\" '/^\\[/{exit} /^onboot:/{print f \": \" $0}' \"$f\"; done; return 0; }",
        "raw cpuinfo grep -a -m1 -E '^vendor_id' \"$R/proc/cpuinfo\"",
        "sec kernel cat \"$R/proc/sys/kernel/osrelease\"",
        "sec cmdline cat \"$R/proc/cmdline\"",
        "sec boot_id cat \"$R/proc/sys/kernel/random/boot_id\"",
        "sec sysstate systemctl is-system-running",
        "sec efi sh -c '[ -d \"$1/sys/firmware/efi\" ] && echo yes || echo no' sh \"$R\"",
        "sec pbt proxmox-boot-tool status",
        "sec efibootmgr efibootmgr -v",
        "sec iommu_groups sh -c 'ls -1 \"$1/sys/kernel/iommu_groups\" 2>/dev/null | wc -l' sh \"$R\"",
        'D="$R/sys/bus/pci/devices"',
        'raw pci_ids grep -a -H . "$D"/*/vendor "$D"/*/device "$D"/*/class "$D"/*/subsystem_vendor "$D"/*/subsystem_device '
        '"$D"/*/boot_vga "$D"/*/driver_override',
        # The links' targets name the driver and the group; one find, no fork per device.
        "sec pci_links find \"$D\"/*/driver \"$D\"/*/iommu_group -maxdepth 0 -printf '%p %l\\n'",
        "sec vfio_options vfio_options",
        "sec holders holders",
        "sec datacenter cat \"$R/etc/pve/datacenter.cfg\"",
        "sec pending sh -c 'ls -1 \"$1/pending\" 2>/dev/null' sh \"$S\"",
        "sec cordoned sh -c 'ls -1 \"$1/cordoned\" 2>/dev/null' sh \"$S\"",
        "sec temps sh -c 'for d in \"$@\"; do [ -d \"$d\" ] && find \"$d\" -name \"*" + TEMP_MARK + "*\" -type f; done' sh "
        + " ".join(q(prefix + d) for d in TEMP_DIRS),
    ]
    for path in READ_FILES:
        lines.append(f"fil file {q(prefix + path)} {q(path)}")
    lines.append(f'for f in "$R"{q(GRUB_D)}/*.cfg; do fil file "$f" "${{f#"$R"}}"; done')
    lines.append("rec original originals")
    lines.append("rec written written")
    lines.append("rec bound bound")
    lines.append(f"G={q(guests)}")
    lines.append("need=0")
    if guests == "auto":
        lines.append('[ "$(ls -1 "$R/sys/kernel/iommu_groups" 2>/dev/null | wc -l)" -gt 0 ] || need=1')
        for slot in slots:
            lines.append(f'for f in "$D"/{q(slot)}.*; do [ -e "$f" ] || continue; d=$(readlink "$f/driver" 2>/dev/null); '
                         '[ "${d##*/}" = vfio-pci ] || need=1; done')
        if want_tokens:
            lines.append('read -r running < "$R/proc/cmdline" || true')
            for token in want_tokens:
                lines.append(f'case " $running " in *{q(" " + token + " ")}*) ;; *) need=1;; esac')
    lines += ['if [ "$G" = always ] || [ "$need" = 1 ]; then', *_GUEST_LINES, "fi", "exit 0"]
    return "\n".join(lines) + "\n"


# The guests on this node: its name (pmxcfs: /etc/pve/local -> nodes/<name>),
# every VM and container of the cluster, and which of this node's have onboot=1.
_GUEST_LINES = (
    '  sec pve_node readlink "$R/etc/pve/local"',
    "  sec guests pvesh get /cluster/resources --type vm --output-format json",
    "  sec onboot onboot",
)


def guests_script(root: str = "/") -> str:
    """POSIX sh that reads only the guests (one round trip, changing nothing)."""
    full = facts_script(root)
    head = full.split("\nraw cpuinfo", 1)[0]  # the variables and helper functions
    return "\n".join([head, *_GUEST_LINES, "exit 0"]) + "\n"


def read_guests(transport: Runner, *, root: str = "/", everywhere: bool = False) -> tuple[tuple[Guest, ...] | None, str, str]:
    """(guests, problem, node name) in one round trip."""
    result = transport.run_script(guests_script(root), label="read guests (pvesh)", timeout=120)
    if not result.ok:
        return None, f"the guest script failed (rc={result.rc}): {shown(result.stderr.strip(), 200)}", ""
    named = {section.name: section for section in split_sections(result.stdout)}

    def rc(name: str) -> int:
        section = named.get(name)
        return int(section.args[0][3:]) if section and section.args and section.args[0].startswith("rc=") else 127

    def body(name: str) -> str:
        return named[name].body if name in named else ""

    return parse_guests(rc("pve_node"), body("pve_node"), rc("guests"), body("guests"), body("onboot"), root, everywhere=everywhere)


def gather_facts(transport: Runner, gpu_addresses: list[str], *, root: str = "/", guests: str = "never",
                 want_tokens: tuple[str, ...] = ()) -> HostFacts:
    """Read the host in one round trip and parse it."""
    slots = tuple(sorted({address.rsplit(".", 1)[0] for address in gpu_addresses}))
    script = facts_script(root, slots=slots, want_tokens=want_tokens, guests=guests)
    result = transport.run_script(script, label="read host facts", timeout=120)
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
    """``vendor_id : GenuineIntel`` -> "intel"; AuthenticAMD -> "amd".
    Anything else is refused: the IOMMU rules here are for those two only."""
    value = text.split(":", 1)[1].strip() if ":" in text else text.strip()
    vendor = CPU_VENDORS.get(value)
    if vendor is None:
        raise FactsError(f"/proc/cpuinfo: vendor_id is {shown(value, 40)!r}, not GenuineIntel or AuthenticAMD; "
                         "this program only knows the IOMMU settings of Intel and AMD CPUs, so it changes nothing")
    return vendor


def parse_kernel_version(release: str) -> tuple[int, int]:
    """``6.8.12-4-pve`` -> (6, 8)."""
    match = re.match(r"^(\d+)\.(\d+)", release.strip())
    if not match:
        raise FactsError(f"cannot read a kernel version from {shown(release)!r}")
    return int(match.group(1)), int(match.group(2))


_ESP_LINE = re.compile(r"^\S+ is configured with: (uefi|grub)\b", re.M)


def parse_boot_tool_status(rc: int, text: str) -> list[str] | None:
    """Modes of the ESPs proxmox-boot-tool keeps in sync (["uefi"], ["grub"]);
    [] when it manages none (exit 2, "… proxmox-boot-uuids does not exist");
    None when the output cannot be read."""
    if rc == 2 and "proxmox-boot-uuids does not exist" in text:
        return []
    if rc != 0:
        return None
    modes = _ESP_LINE.findall(text)
    return modes or None


def parse_efibootmgr_current(rc: int, text: str) -> str | None:
    """The loader file of the entry the host booted from, lowercased; None
    when the host has no EFI variables (a BIOS boot); "" when the output
    cannot be read (no BootCurrent, or no entry for it)."""
    if "EFI variables are not supported" in text:
        return None
    if rc != 0:
        return ""
    current = re.search(r"^BootCurrent:\s*([0-9A-Fa-f]{4})\s*$", text, re.M)
    if not current:
        return ""
    entry = re.search(rf"^Boot{current.group(1)}\*?\s+(.*)$", text, re.M)
    if not entry:
        return ""
    file_match = re.search(r"File\(([^)]*)\)", entry.group(1))
    return (file_match.group(1) if file_match else entry.group(1)).lower()


def _loader_kind(loader: str) -> str | None:
    if "systemd" in loader:
        return "systemd-boot"
    if "grub" in loader or "shim" in loader:
        return "grub"
    return None  # another loader name (e.g. the removable \EFI\BOOT\BOOTX64.EFI): no evidence either way


def detect_bootloader(*, efi: bool, efibootmgr_rc: int, efibootmgr_out: str, pbt_rc: int, pbt_out: str) -> tuple[str, bool, str, str]:
    """(bootloader, proxmox-boot-tool manages it, evidence, problem) from the
    two tools' output, as pve-docs "Determine which Bootloader is Used" says.
    ``problem`` is non-empty when the evidence cannot be read or disagrees:
    the planner then refuses instead of editing a file the host may not boot from."""
    modes = parse_boot_tool_status(pbt_rc, pbt_out)
    loader = parse_efibootmgr_current(efibootmgr_rc, efibootmgr_out)
    problems = []
    if modes is None:
        problems.append(f"`proxmox-boot-tool status` (rc={pbt_rc}) printed no ESP this program can read: {shown(pbt_out.strip(), 120)!r}")
    booted = re.search(r"^System currently booted with (uefi|legacy bios)", pbt_out, re.M)
    if booted and (booted.group(1) == "uefi") != efi:
        problems.append(f"proxmox-boot-tool says the system booted with {booted.group(1)}, but /sys/firmware/efi {'exists' if efi else 'does not exist'}")
    if loader == "" and efibootmgr_rc == 0:
        problems.append(f"`efibootmgr -v` output cannot be read (no BootCurrent entry): {shown(efibootmgr_out.strip(), 120)!r}")
    if loader is None and efi:
        problems.append("efibootmgr reports no EFI variables, but /sys/firmware/efi exists")
    if loader and not efi:
        problems.append(f"efibootmgr names a current EFI entry ({loader}), but /sys/firmware/efi does not exist")
    kind = _loader_kind(loader) if loader else None
    managed = bool(modes)
    if modes and len(set(modes)) > 1:
        problems.append(f"proxmox-boot-tool keeps ESPs with different loaders ({', '.join(sorted(set(modes)))})")
    if modes and modes[0] == "uefi":
        bootloader, evidence = "systemd-boot", "proxmox-boot-tool status: ESP configured with uefi (systemd-boot)"
        if not efi:
            problems.append("proxmox-boot-tool keeps a systemd-boot (uefi) ESP, but the host did not boot with UEFI")
    elif modes:
        bootloader = "grub-uefi" if efi else "grub-bios"
        evidence = "proxmox-boot-tool status: ESP configured with grub"
    else:
        # Without proxmox-boot-tool a Proxmox VE host boots with GRUB (systemd-boot is only set up through it).
        bootloader = "grub-uefi" if efi else "grub-bios"
        evidence = "no proxmox-boot-tool ESPs: GRUB" + (" (UEFI)" if efi else " (legacy BIOS, no EFI variables)")
    if kind and kind != ("systemd-boot" if bootloader == "systemd-boot" else "grub"):
        problems.append(f"efibootmgr -v says the host booted from {loader} ({kind}), but {evidence}")
    elif kind:
        evidence += f"; efibootmgr -v: booted from {loader}"
    return bootloader, managed, evidence, "; ".join(problems)


def parse_pci(ids_text: str, links_text: str) -> dict[str, PciFunction]:
    """``grep -H`` of the sysfs id files plus ``find -printf '%p %l'`` of the
    driver/iommu_group links -> every device, with group members filled in.
    A value not in sysfs's exact format is refused."""
    raw: dict[str, dict[str, str]] = {}
    for line in ids_text.splitlines():
        match = _ID_LINE.search(line)
        if not match:
            continue
        address, attr, value = match.group(1), match.group(2), match.group(3)
        values = raw.setdefault(address, {})
        if attr in values:
            raise FactsError(f"sysfs {address}/{attr} holds more than one line ({shown(values[attr])!r}, {shown(value)!r}); "
                             "refusing to use it (nothing was written)")
        pattern, what = _ID_FORMATS[attr]
        if not pattern.fullmatch(value):
            raise FactsError(f"sysfs {address}/{attr} holds {shown(value)!r}, not {what}; refusing to use it (nothing was written)")
        values[attr] = value.lower()
    for line in links_text.splitlines():
        match = _LINK_LINE.search(line)
        if not match or match.group(1) not in raw:
            continue
        address, attr = match.group(1), match.group(2)
        target = match.group(3).strip().rstrip("/").rsplit("/", 1)[-1]
        if attr == "iommu_group" and not target.isdigit():
            raise FactsError(f"sysfs {address}/iommu_group points to {shown(target)!r}, not a group number; "
                             "cannot check the GPU's isolation, so nothing was written")
        if attr == "driver" and not _DRIVER_NAME.fullmatch(target):
            raise FactsError(f"sysfs {address}/driver points to {shown(target)!r}, not a driver name; refusing to use it")
        raw[address][attr] = target
    groups: dict[int, list[str]] = {}
    for address, values in raw.items():
        if "iommu_group" in values:
            groups.setdefault(int(values["iommu_group"]), []).append(address)
    devices = {}
    for address, values in sorted(raw.items()):
        for required in ("vendor", "device", "class"):
            if required not in values:
                raise FactsError(f"sysfs {address} has no readable {required} file; refusing to use the PCI facts")
        group = int(values["iommu_group"]) if "iommu_group" in values else None
        sub_vendor, sub_device = values.get("subsystem_vendor"), values.get("subsystem_device")
        devices[address] = PciFunction(
            address=address,
            vendor_device=f"{values['vendor'][2:]}:{values['device'][2:]}",
            class_code=values["class"],
            subsystem_id=f"{sub_vendor[2:]}:{sub_device[2:]}" if sub_vendor and sub_device else None,
            driver=values.get("driver") or None,
            iommu_group=group,
            group_members=tuple(sorted(a for a in groups.get(group, []) if a != address)) if group is not None else (),
        )
    return devices


_BINDING_LINE = re.compile(rf"/devices/({_ADDRESS})/(boot_vga|driver_override):(.*)$")


def parse_binding_attrs(ids_text: str, devices: dict[str, PciFunction]) -> dict[str, PciFunction]:
    """``boot_vga`` (VGA-class devices only: ``0`` or ``1``) and
    ``driver_override`` (``(null)`` when unset) from the same ``grep -H``
    output, as drivers/pci/pci-sysfs.c prints them; anything else is refused."""
    out = dict(devices)
    for line in ids_text.splitlines():
        match = _BINDING_LINE.search(line)
        if not match or match.group(1) not in out:
            continue
        address, attr, value = match.groups()
        if attr == "boot_vga":
            if value not in ("0", "1"):
                raise FactsError(f"sysfs {address}/boot_vga holds {shown(value)!r}, not 0 or 1; refusing to use it (nothing was written)")
            out[address] = dataclasses.replace(out[address], boot_vga=value == "1")
        elif value != "(null)":
            if not _DRIVER_NAME.fullmatch(value):
                raise FactsError(f"sysfs {address}/driver_override holds {shown(value)!r}, not a driver name; refusing to use it")
            out[address] = dataclasses.replace(out[address], driver_override=value)
    return out


def parse_holders(text: str) -> tuple[tuple[int, str, str], ...]:
    """``<pid> <device> <comm>`` lines -> (pid, device, command); other lines are ignored."""
    found = []
    for line in text.splitlines():
        match = re.fullmatch(r"(\d{1,10}) (/dev/(?:nvidia[A-Za-z0-9-]*|vfio/[0-9a-z]+)) ?(.*)", line)
        if match:
            found.append((int(match.group(1)), match.group(2), shown(match.group(3).strip(), 32)))
    return tuple(sorted(set(found)))


HA_POLICIES = ("freeze", "failover", "conditional", "migrate")  # pve-cluster src/PVE/DataCenterConfig.pm pve-ha-shutdown-policy


def parse_ha_policy(rc: int, text: str) -> tuple[str, str]:
    """(policy, note) from /etc/pve/datacenter.cfg's ``ha: shutdown_policy=…``
    (a property string, pve-cluster DataCenterConfig.pm). No file or no
    setting: ``conditional``, the schema's default; an unknown value: pve-ha-manager's
    LRM.pm logs an error and falls back to ``conditional`` too."""
    if rc != 0:
        return "conditional", ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "ha":
            settings = dict(item.partition("=")[::2] for item in value.strip().split(",") if item)
            policy = settings.get("shutdown_policy", "").strip()
            if not policy:
                return "conditional", ""
            if policy not in HA_POLICIES:
                return "conditional", (f"/etc/pve/datacenter.cfg sets ha: shutdown_policy={shown(policy, 30)}, which pve-ha-manager does not know; "
                                       "it falls back to conditional")
            return policy, ""
    return "conditional", ""


def parse_vfio_options(text: str, root: str = "/") -> tuple[tuple[str, str], ...]:
    """``grep -H`` lines ``<file>:options vfio-pci ...`` -> (file, line), root
    stripped. Only lines naming a /etc/modprobe.d/*.conf file count."""
    prefix = root.rstrip("/")
    found = []
    pattern = re.compile(rf"^{re.escape(prefix)}(/etc/modprobe\.d/[^/:]+\.conf):(\s*options\s+vfio[-_]pci\b.*)$")
    for line in text.splitlines():
        match = pattern.match(line)
        if match:
            found.append((match.group(1), match.group(2).strip()))
    return tuple(found)


_GUEST_TYPES = ("qemu", "lxc")


def parse_guests(node_rc: int, node_text: str, rc: int, text: str, onboot_text: str, root: str = "/",
                 *, everywhere: bool = False) -> tuple[tuple[Guest, ...] | None, str, str]:
    """(guests on this node, problem, node name) from ``readlink /etc/pve/local``
    (``nodes/<name>``, pmxcfs), ``pvesh get /cluster/resources --type vm
    --output-format json`` and the ``onboot:`` lines of the guests' configs.
    ``everywhere``: the guests of every node (where HA moved one to)."""
    node = node_text.strip().rstrip("/").rsplit("/", 1)[-1] if node_rc == 0 else ""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}", node):
        return None, f"cannot tell this node's name (/etc/pve/local: {shown(node_text.strip())!r}); is this a Proxmox VE host?", ""
    if rc != 0:
        return None, f"`pvesh get /cluster/resources --type vm` failed (rc={rc}): {shown(text.strip(), 200)}", node
    try:
        data = json.loads(text)
    except ValueError:
        return None, f"`pvesh get /cluster/resources` printed something that is not JSON: {shown(text.strip(), 120)!r}", node
    if not isinstance(data, list):
        return None, f"`pvesh get /cluster/resources` printed a JSON {type(data).__name__}, expected a list", node
    prefix = root.rstrip("/")
    onboot: set[tuple[str, int]] = set()
    for line in onboot_text.splitlines():
        match = re.match(rf"^{re.escape(prefix)}/etc/pve/(qemu-server|lxc)/(\d+)\.conf: onboot:\s*(\S+)\s*$", line)
        if match and match.group(3) == "1":
            onboot.add(("qemu" if match.group(1) == "qemu-server" else "lxc", int(match.group(2))))
    guests = []
    for item in data:
        if not isinstance(item, dict) or item.get("type") not in _GUEST_TYPES or (item.get("node") != node and not everywhere):
            continue
        if item.get("template") in (1, True, "1"):
            continue  # a template never runs
        vmid = item.get("vmid")
        if isinstance(vmid, str) and vmid.isdigit():
            vmid = int(vmid)
        if not isinstance(vmid, int) or isinstance(vmid, bool) or not 100 <= vmid <= 999_999_999:
            return None, f"`pvesh get /cluster/resources` lists a guest with vmid {shown(str(vmid))!r}", node
        status, name = item.get("status"), item.get("name", "")
        if not isinstance(status, str) or not re.fullmatch(r"[a-z]{1,20}", status) or not isinstance(name, str):
            return None, f"`pvesh get /cluster/resources` lists guest {vmid} with status {shown(str(status))!r}", node
        hastate = item.get("hastate", "")
        if not isinstance(hastate, str) or not re.fullmatch(r"[a-z_]{0,30}", hastate):
            return None, f"`pvesh get /cluster/resources` lists guest {vmid} with hastate {shown(str(hastate))!r}", node
        guests.append(Guest(vmid, shown(name, 64), item["type"], status, (item["type"], vmid) in onboot, hastate,
                            shown(str(item.get("node", "")), 64)))
    return tuple(sorted(guests, key=lambda g: g.vmid)), "", node


def parse_facts(output: str, gpu_addresses: list[str], *, root: str = "/") -> HostFacts:
    """The whole facts script output -> HostFacts."""
    prefix = root.rstrip("/")
    sections = split_sections(output)
    named: dict[str, Section] = {}
    files: dict[str, str | None] = dict.fromkeys(READ_FILES)
    originals: dict[str, str | None] = {}
    written: dict[str, str] = {}
    bound_records: dict[str, str] = {}
    for section in sections:
        if section.name == "file":
            files[" ".join(section.args[:-1])] = section.body
        elif section.name == "original":
            originals[" ".join(section.args[:-1])] = section.body if section.args[-1] == "present" else None
        elif section.name == "bound":
            bound_records[" ".join(section.args[:-1]).lstrip("/")] = section.body.strip() if section.args[-1] == "present" else ""
        elif section.name == "written":
            if section.args[-1] == "present":
                written[" ".join(section.args[:-1])] = section.body
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
    bootloader, managed, evidence, problem = detect_bootloader(
        efi=body("efi").strip() == "yes",
        efibootmgr_rc=rc("efibootmgr"), efibootmgr_out=body("efibootmgr"),
        pbt_rc=rc("pbt"), pbt_out=body("pbt"),
    )
    devices = parse_binding_attrs(body("pci_ids"), parse_pci(body("pci_ids"), body("pci_links")))
    bound = {address: driver for address, driver in bound_records.items()
             if re.fullmatch(_ADDRESS, address) and (driver == "" or _DRIVER_NAME.fullmatch(driver))}
    ha_policy, ha_note = parse_ha_policy(rc("datacenter"), body("datacenter"))
    slots = {address.rsplit(".", 1)[0] for address in gpu_addresses}
    functions = {address: fn for address, fn in devices.items() if address.rsplit(".", 1)[0] in slots}
    temps = tuple(sorted(path[len(prefix):] if prefix else path for path in body("temps").splitlines() if path.strip()))
    groups = body("iommu_groups").strip()
    guests, guests_problem, node = (None, "", "")
    if "guests" in named:
        guests, guests_problem, node = parse_guests(rc("pve_node"), body("pve_node"), rc("guests"), body("guests"), body("onboot"), root)
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
        bootloader_problem=problem,
        written=written,
        guests=guests,
        guests_problem=guests_problem,
        pve_node=node,
        system_state=body("sysstate").strip().splitlines()[0] if body("sysstate").strip() else "",
        cordoned=tuple(sorted(line.strip() for line in body("cordoned").splitlines() if line.strip())),
        holders=parse_holders(body("holders")),
        bound=bound,
        ha_policy=ha_policy,
        ha_policy_note=ha_note,
    )
