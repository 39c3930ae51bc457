"""Host facts, read: one remote script (one SSH round trip) prints every
fact as a section, and ``parse_facts`` turns the sections into HostFacts.

The script prints sections ``@@ptg <name> [args]`` each followed by one line
of base64 (the section's exact bytes), so file contents survive byte for
byte and no output can be mistaken for a header."""

from __future__ import annotations

import base64
import re
import shlex
from dataclasses import dataclass
from typing import Protocol

from components.hostprep.facts import (
    ADDRESS,
    GRUB_D,
    GUEST_MODES,
    READ_FILES,
    STATE_DIR,
    TEMP_DIRS,
    VFIO_FILE,
    FactsError,
    Guest,
    HostFacts,
    shown,
)
from components.hostprep.facts_boot import detect_bootloader, parse_cpu_vendor
from components.hostprep.facts_guests import parse_guests, parse_ha_policy
from components.hostprep.facts_pci import DRIVER_NAME, parse_binding_attrs, parse_holders, parse_pci, parse_vfio_options
from components.ssh.atomic import TEMP_MARK
from components.ssh.transport import CommandResult


class Runner(Protocol):
    def run_script(self, script: str, *, label: str, timeout: float | None = None) -> CommandResult: ...


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
             if re.fullmatch(ADDRESS, address) and (driver == "" or DRIVER_NAME.fullmatch(driver))}
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
