"""The host planner: (inputs from config, host facts, owner) -> HostPlan.

Pure: no SSH, no clock, no filesystem. Every file change and command carries
its reason; everything left alone says why ("nothing to do because ...").
A refusal plan holds no changes at all, so refusing writes nothing.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from components.hostprep.facts import (
    BLACKLIST_FILE,
    ETC_MODULES,
    GRUB_DEFAULT,
    KERNEL_CMDLINE,
    MODULES_LOAD_FILE,
    VFIO_FILE,
    HostFacts,
    PciFunction,
)

if TYPE_CHECKING:
    from components.config import StackConfig

PROJECT_KEY = "proxmox-talos-gpu"
BLACKLISTED = ("nouveau", "nvidia", "nvidia_drm", "nvidia_modeset", "nvidia_uvm", "nvidiafb")
VFIO_MODULES = ("vfio", "vfio_iommu_type1", "vfio_pci")
_OWNER = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
_MANAGED_KEYS = ("intel_iommu", "iommu")  # kernel parameters this program may set
# Drivers that may claim a GPU's companion function before vfio-pci does.
_SOFTDEP_BY_CLASS = {"0403": "snd_hda_intel", "0c03": "xhci_pci", "0c80": "i2c_nvidia_gpu"}

COMMANDS: dict[str, tuple[str, ...]] = {
    "update-initramfs": ("update-initramfs", "-u", "-k", "all"),
    "update-grub": ("update-grub",),
    "proxmox-boot-tool-refresh": ("proxmox-boot-tool", "refresh"),
}


class PlanError(ValueError):
    """The inputs themselves are unusable (e.g. a malformed owner)."""


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuSpec:
    address: str
    id: str | None = None
    subsystem_id: str | None = None
    iommu_group: int | None = None
    index: int | None = None  # position in gpus[] for error keys; None from the CLI

    def key(self, field_name: str) -> str | None:
        return f"gpus[{self.index}].{field_name}" if self.index is not None else None


@dataclass(frozen=True)
class HostPrepInputs:
    gpus: tuple[GpuSpec, ...]
    intel_iommu: str = "auto"  # "auto" | "on"
    iommu_passthrough: bool = True
    allow_reboot: bool = True
    reboot_on_destroy: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpus": [{"address": g.address, "id": g.id, "subsystem_id": g.subsystem_id, "iommu_group": g.iommu_group, "index": g.index} for g in self.gpus],
            "intel_iommu": self.intel_iommu, "iommu_passthrough": self.iommu_passthrough,
            "allow_reboot": self.allow_reboot, "reboot_on_destroy": self.reboot_on_destroy,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostPrepInputs:
        gpus = tuple(GpuSpec(address=g["address"], id=g.get("id"), subsystem_id=g.get("subsystem_id"),
                             iommu_group=None if g.get("iommu_group") is None else int(g["iommu_group"]),
                             index=None if g.get("index") is None else int(g["index"])) for g in data["gpus"])
        return cls(gpus=gpus, intel_iommu=data.get("intel_iommu", "auto"), iommu_passthrough=bool(data.get("iommu_passthrough", True)),
                   allow_reboot=bool(data.get("allow_reboot", True)), reboot_on_destroy=bool(data.get("reboot_on_destroy", False)))


def inputs_from_config(cfg: StackConfig) -> HostPrepInputs:
    return HostPrepInputs(
        gpus=tuple(GpuSpec(address=g.address, id=g.id, subsystem_id=g.subsystem_id, iommu_group=g.iommu_group, index=i) for i, g in enumerate(cfg.gpus)),
        intel_iommu=cfg.host.intel_iommu,
        iommu_passthrough=cfg.host.iommu_passthrough_mode,
        allow_reboot=cfg.host.allow_reboot,
        reboot_on_destroy=cfg.host.reboot_on_destroy,
    )


# --------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class FileChange:
    path: str
    before: str | None  # None: the file does not exist
    after: str | None  # None: delete the file
    reason: str

    def diff(self) -> str:
        before = [] if self.before is None else self.before.splitlines(keepends=True)
        after = [] if self.after is None else self.after.splitlines(keepends=True)
        lines = difflib.unified_diff(before, after, fromfile="/dev/null" if self.before is None else f"a{self.path}",
                                     tofile="/dev/null" if self.after is None else f"b{self.path}")
        return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


@dataclass(frozen=True)
class Command:
    name: str  # key of COMMANDS, also the pending marker's name on the host
    reason: str

    @property
    def argv(self) -> tuple[str, ...]:
        return COMMANDS[self.name]


@dataclass(frozen=True)
class Refusal:
    key: str | None  # config key under proxmox-talos-gpu:, when one is to blame
    message: str

    def __str__(self) -> str:
        return f"{PROJECT_KEY}:{self.key}: {self.message}" if self.key else self.message


@dataclass(frozen=True)
class HostPlan:
    owner: str
    files: tuple[FileChange, ...] = ()
    commands: tuple[Command, ...] = ()
    reboot: bool = False
    reboot_reason: str = ""
    noops: tuple[str, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    notes: tuple[str, ...] = ()
    cleanup: tuple[str, ...] = ()  # stale temp files from an interrupted run
    forget_originals: tuple[str, ...] = ()  # undo: original records to drop once restored
    wanted_cmdline: tuple[str, ...] = ()  # must be on /proc/cmdline after boot
    functions: tuple[str, ...] = ()  # must be bound to vfio-pci after boot
    check_isolation_after_boot: bool = False
    allow_reboot: bool = True

    @property
    def refused(self) -> bool:
        return bool(self.refusals)

    @property
    def changes_host(self) -> bool:
        return bool(self.files or self.commands or self.cleanup or self.forget_originals)

    @property
    def is_noop(self) -> bool:
        return not self.refused and not self.changes_host and not self.reboot

    def render(self, *, diffs: bool = True) -> str:
        out: list[str] = []
        for refusal in self.refusals:
            out.append(f"REFUSED: {refusal}")
        for change in self.files:
            verb = "create" if change.before is None else "delete" if change.after is None else "update"
            out.append(f"{verb} {change.path}: {change.reason}")
            if diffs:
                out.extend("    " + line for line in change.diff().rstrip("\n").splitlines())
        for path in self.cleanup:
            out.append(f"remove {path}: temp file left by an interrupted run")
        for command in self.commands:
            out.append(f"run `{' '.join(command.argv)}`: {command.reason}")
        if self.reboot:
            out.append(f"reboot: {self.reboot_reason}" + ("" if self.allow_reboot else " (host.allowReboot is false: reboot by hand)"))
        for noop in self.noops:
            out.append(f"ok: {noop}")
        for note in self.notes:
            out.append(f"note: {note}")
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "refusals": [{"key": r.key and f"{PROJECT_KEY}:{r.key}", "message": r.message} for r in self.refusals],
            "files": [{"path": c.path, "action": "create" if c.before is None else "delete" if c.after is None else "update",
                       "reason": c.reason, "diff": c.diff()} for c in self.files],
            "cleanup": list(self.cleanup),
            "commands": [{"command": list(c.argv), "reason": c.reason} for c in self.commands],
            "reboot": self.reboot, "reboot_reason": self.reboot_reason,
            "noops": list(self.noops), "notes": list(self.notes),
            "wanted_cmdline": list(self.wanted_cmdline), "functions": list(self.functions),
        }


# --------------------------------------------------------------------------
# Kernel command line editing (pure)
# --------------------------------------------------------------------------


def _key(token: str) -> str:
    return token.split("=", 1)[0]


def edit_tokens(value: str, wanted: list[str]) -> str:
    """Add each ``key=value`` to a space-separated command line, replacing a
    different value of the same key in place; everything else untouched."""
    tokens = value.split()
    for token in wanted:
        if token in tokens and all(t == token for t in tokens if _key(t) == _key(token)):
            continue
        positions = [i for i, t in enumerate(tokens) if _key(t) == _key(token)]
        if positions:
            tokens[positions[0]] = token
            tokens = [t for i, t in enumerate(tokens) if i not in positions[1:]]
        else:
            tokens.append(token)
    return " ".join(tokens)


_GRUB_LINE = re.compile(r"^(?P<lead>\s*(?:export\s+)?GRUB_CMDLINE_LINUX_DEFAULT=)(?P<value>.*?)(?P<trail>\s*)$")


def grub_value(content: str) -> tuple[int | None, str, str]:
    """(index of the effective GRUB_CMDLINE_LINUX_DEFAULT line, its unquoted
    value, quote char). Raises PlanError on a value too complex to edit."""
    lines = content.splitlines()
    index = None
    for i, line in enumerate(lines):
        if _GRUB_LINE.match(line):
            index = i  # the shell takes the last assignment
    if index is None:
        return None, "", '"'
    raw = _GRUB_LINE.match(lines[index]).group("value")  # type: ignore[union-attr]
    quote = raw[0] if raw[:1] in ("'", '"') else ""
    inner = raw[1:-1] if quote and raw.endswith(quote) and len(raw) >= 2 else raw
    if quote and not (raw.endswith(quote) and len(raw) >= 2):
        raise PlanError(f"line {index + 1} of {GRUB_DEFAULT} has an unterminated quote")
    if any(ch in inner for ch in "$`\\") or (quote == "" and any(ch in inner for ch in "\"' ;")):
        raise PlanError(f"line {index + 1} of {GRUB_DEFAULT} ({lines[index].strip()}) uses shell syntax this program will not rewrite")
    return index, inner, quote or '"'


def edit_grub(content: str, wanted: list[str]) -> str:
    """Minimal edit of /etc/default/grub: only GRUB_CMDLINE_LINUX_DEFAULT's value."""
    index, value, quote = grub_value(content)
    new_value = edit_tokens(value, wanted)
    if index is None:
        if not new_value:
            return content
        sep = "" if content.endswith("\n") or not content else "\n"
        return f"{content}{sep}GRUB_CMDLINE_LINUX_DEFAULT={quote}{new_value}{quote}\n"
    if new_value == value:
        return content
    lines = content.splitlines(keepends=True)
    match = _GRUB_LINE.match(lines[index].rstrip("\r\n"))
    assert match is not None
    ending = lines[index][len(lines[index].rstrip("\r\n")):]
    lines[index] = f"{match.group('lead')}{quote}{new_value}{quote}{match.group('trail')}{ending}"
    return "".join(lines)


def kernel_cmdline_value(content: str) -> str:
    lines = [line for line in content.splitlines() if line.strip()]
    if len(lines) != 1:
        raise PlanError(f"{KERNEL_CMDLINE} must hold exactly one line (it holds {len(lines)})")
    return lines[0]


def edit_kernel_cmdline(content: str, wanted: list[str]) -> str:
    """Minimal edit of /etc/kernel/cmdline (one line), keeping its line ending."""
    value = kernel_cmdline_value(content)
    new_value = edit_tokens(value, wanted)
    if new_value == value.strip() and value == value.strip():
        return content
    return content.replace(value, new_value, 1)


def cmdline_file(facts: HostFacts) -> str:
    return KERNEL_CMDLINE if facts.bootloader == "systemd-boot" else GRUB_DEFAULT


def _cmdline_of(path: str, content: str) -> str:
    return grub_value(content)[1] if path == GRUB_DEFAULT else kernel_cmdline_value(content)


def _edit(path: str, content: str, wanted: list[str]) -> str:
    return edit_grub(content, wanted) if path == GRUB_DEFAULT else edit_kernel_cmdline(content, wanted)


# --------------------------------------------------------------------------
# The managed vfio file: one block per stack, derived lines after them
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    owner: str
    functions: tuple[tuple[str, str, str], ...]  # (address, vendor:device, class)


_BLOCK = re.compile(r"^# BEGIN (?P<owner>\S+)\n(?P<body>(?:.*\n)*?)# END (?P=owner)$", re.M)
_FUNCTION_LINE = re.compile(r"^# function (\S+) ([0-9a-f]{4}:[0-9a-f]{4}) (0x[0-9a-f]{6})$")


def parse_blocks(content: str | None) -> dict[str, Block]:
    blocks: dict[str, Block] = {}
    for match in _BLOCK.finditer(content or ""):
        functions = tuple(m.groups() for m in (_FUNCTION_LINE.match(line) for line in match.group("body").splitlines()) if m)
        blocks[match.group("owner")] = Block(match.group("owner"), functions)  # type: ignore[arg-type]
    return blocks


def render_vfio_file(blocks: dict[str, Block]) -> str | None:
    """The whole file from every stack's block; None when no block is left.
    `options vfio-pci ids=` is last-wins, so there is exactly one such line,
    the union of all blocks."""
    if not blocks:
        return None
    out = [
        "# Managed by proxmox-talos-gpu: binds passed-through GPUs to vfio-pci.",
        "# One block per stack; each stack edits only its own block, and the lines",
        "# after the blocks are derived from all of them. Do not edit by hand.",
    ]
    ids: set[str] = set()
    softdeps: set[str] = set()
    for owner in sorted(blocks):
        out.append(f"# BEGIN {owner}")
        for address, vendor_device, class_code in blocks[owner].functions:
            out.append(f"# function {address} {vendor_device} {class_code}")
            ids.add(vendor_device)
            module = _SOFTDEP_BY_CLASS.get(class_code[2:6])
            if module:
                softdeps.add(module)
        out.append(f"# END {owner}")
    out.append(f"options vfio-pci ids={','.join(sorted(ids))}")
    out.extend(f"softdep {module} pre: vfio-pci" for module in sorted(softdeps))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------


def blacklist_content() -> str:
    lines = ["# Managed by proxmox-talos-gpu: keep host GPU drivers off passed-through GPUs."]
    lines += [f"blacklist {module}" for module in BLACKLISTED]
    return "\n".join(lines) + "\n"


def modules_load_content(kernel: tuple[int, int]) -> str:
    modules = list(VFIO_MODULES)
    if kernel < (6, 2):
        modules.append("vfio_virqfd")  # a separate module only before 6.2 (DESIGN fact 5)
    return "# Managed by proxmox-talos-gpu: VFIO modules for PCI passthrough.\n" + "\n".join(modules) + "\n"


def wanted_cmdline_tokens(inputs: HostPrepInputs, facts: HostFacts) -> tuple[list[str], list[str]]:
    """(tokens, reasons). intel_iommu=on only on Intel, and only before 6.8 or
    when asked (or to undo an explicit intel_iommu=off); never on AMD."""
    tokens, reasons = [], []
    running = facts.cmdline.split()
    kernel = facts.kernel_version
    if facts.cpu_vendor == "intel":
        if inputs.intel_iommu == "on":
            tokens.append("intel_iommu=on")
            reasons.append("intel_iommu=on because host.intelIommu is on")
        elif kernel < (6, 8):
            tokens.append("intel_iommu=on")
            reasons.append(f"intel_iommu=on because Intel CPUs need it before kernel 6.8 (running {facts.kernel_release})")
        elif "intel_iommu=off" in running:
            tokens.append("intel_iommu=on")
            reasons.append("intel_iommu=on because the command line turns the IOMMU off")
    if inputs.iommu_passthrough:
        tokens.append("iommu=pt")
        reasons.append("iommu=pt because host.iommuPassthroughMode is true")
    return tokens, reasons


def _refusals(inputs: HostPrepInputs, facts: HostFacts, owner: str, blocks: dict[str, Block]) -> tuple[list[Refusal], list[str], bool]:
    """(refusals, notes, isolation must be checked after the first boot)."""
    refusals: list[Refusal] = []
    notes: list[str] = []
    running = facts.cmdline.split()
    kernel = facts.kernel_version
    defer_isolation = False

    # IOMMU: expected off (we turn it on) or off in the firmware (refuse).
    if not facts.iommu_active:
        if facts.cpu_vendor == "amd" and any(t in running for t in ("amd_iommu=off", "iommu=off")):
            refusals.append(Refusal(None, "the running kernel command line turns the IOMMU off (amd_iommu=off or iommu=off); remove it from the boot configuration first"))
        elif facts.cpu_vendor == "intel" and "intel_iommu=on" not in running and (kernel < (6, 8) or "intel_iommu=off" in running):
            defer_isolation = True
            notes.append(f"IOMMU is not active yet: expected on Intel with kernel {facts.kernel_release} without intel_iommu=on; "
                         "this plan turns it on, and IOMMU group isolation is checked right after the reboot")
        else:
            why = {"amd": "AMD CPUs have it on by default", "intel": "Intel CPUs have it on by default from kernel 6.8" if kernel >= (6, 8) else "intel_iommu=on is already on the command line"}
            refusals.append(Refusal(None, (
                f"the IOMMU is not active although it should be ({why.get(facts.cpu_vendor, 'the kernel should enable it')}): "
                "it is switched off in the firmware. Enable VT-d (Intel) or AMD-Vi/IOMMU and SVM (AMD) in the BIOS/UEFI setup, boot, and re-run. Nothing was written.")))

    claimed_other: set[str] = {address for o, block in blocks.items() if o != owner for address, _, _ in block.functions}
    ours: list[PciFunction] = []
    for gpu in inputs.gpus:
        functions = facts.slot_functions(gpu.address)
        first = facts.functions.get(gpu.address)
        if first is None:
            found = ", ".join(f"{a} ({d.vendor_device} {d.kind})" for a, d in facts.devices.items() if d.vendor_device.startswith("10de:") and not d.is_bridge)
            refusals.append(Refusal(gpu.key("address"), f"{gpu.address!r}: no such PCI device on the host" + (f"; NVIDIA devices present: {found}" if found else "")))
            continue
        ours.extend(functions)
        if gpu.id and gpu.id != first.vendor_device:
            refusals.append(Refusal(gpu.key("id"), f"{gpu.id!r}, but {gpu.address} is {first.vendor_device} ({first.kind}); set the id lspci -nn shows"))
        if gpu.subsystem_id and first.subsystem_id and gpu.subsystem_id != first.subsystem_id:
            refusals.append(Refusal(gpu.key("subsystemId"), f"{gpu.subsystem_id!r}, but {gpu.address} reports subsystem {first.subsystem_id}"))
        if gpu.address in claimed_other:
            other = next(o for o, b in blocks.items() if o != owner and any(a == gpu.address for a, _, _ in b.functions))
            refusals.append(Refusal(gpu.key("address"), f"{gpu.address!r} is already passed through by stack {other}; one GPU can go to one VM"))
        if facts.iommu_active:
            if gpu.iommu_group is not None and first.iommu_group is not None and gpu.iommu_group != first.iommu_group:
                refusals.append(Refusal(gpu.key("iommuGroup"), f"{gpu.iommu_group!r}, but {gpu.address} is in IOMMU group {first.iommu_group}"))
            problem = isolation_problem(gpu, functions, facts)
            if problem:
                refusals.append(Refusal(gpu.key("address"), problem))

    # `ids=` binds by model: a same-model device that stays with the host would be taken too.
    claimed = {fn.address for fn in ours} | claimed_other
    for fn in ours:
        for other in facts.devices.values():
            if other.vendor_device == fn.vendor_device and other.address not in claimed:
                gpu = next(g for g in inputs.gpus if g.address.rsplit(".", 1)[0] == fn.address.rsplit(".", 1)[0])
                refusals.append(Refusal(gpu.key("id") or gpu.key("address"), (
                    f"{other.address} is the same model ({fn.vendor_device}) as {fn.address} and stays with the host; "
                    "`options vfio-pci ids=` binds by model, so it would take that device from the host too. "
                    "Pass both through (list both in gpus), or bind per device (driver_override), which this program does not do.")))
    # The blacklist takes these drivers from every device at the next boot.
    for other in facts.devices.values():
        if other.address in claimed or other.driver not in BLACKLISTED or other.is_bridge:
            continue
        if other.driver.startswith("nvidia") and other.driver != "nvidiafb":
            refusals.append(Refusal(None, (
                f"{other.address} ({other.vendor_device} {other.kind}) stays with the host and uses the proprietary driver {other.driver}; "
                f"blacklisting {', '.join(BLACKLISTED)} would take it away at the next boot. Pass it through too, or prepare this host by hand.")))
        else:
            notes.append(f"{other.address} ({other.vendor_device} {other.kind}) stays with the host and loses driver {other.driver} "
                         "at the next boot (blacklisted); the host console falls back to the firmware framebuffer")
    for path, line in facts.foreign_vfio_options:
        refusals.append(Refusal(None, (
            f"{path} sets `{line}`; vfio-pci options are last-wins, so two files fight over them. "
            f"Remove that line (proxmox-talos-gpu keeps the one ids= line in {VFIO_FILE}) and re-run.")))
    for token in running:
        if _key(token) in ("vfio-pci.ids", "vfio_pci.ids"):
            refusals.append(Refusal(None, f"the kernel command line sets {token}; it overrides {VFIO_FILE}. Remove it from the boot configuration and re-run."))
    return refusals, notes, defer_isolation


def isolation_problem(gpu: GpuSpec, functions: list[PciFunction], facts: HostFacts) -> str | None:
    """A message when a GPU's IOMMU group holds anything but its own functions and PCI bridges."""
    own = {fn.address for fn in functions}
    offenders: dict[str, PciFunction] = {}
    for fn in functions:
        for member in fn.group_members:
            device = facts.devices.get(member)
            if member not in own and not (device and device.is_bridge):
                offenders[member] = device or PciFunction(member, "?", "0x000000", None, None, fn.iommu_group)
    if not offenders:
        return None
    first = functions[0]
    listed = "; ".join(f"{d.address} ({d.kind} {d.vendor_device}, driver {d.driver or 'none'})" for d in offenders.values())
    return (f"IOMMU group {first.iommu_group} of {gpu.address} also holds {listed}. Passing the GPU through would hand those "
            "devices to the VM too (and cut the host off them). Move the card to another slot (one whose group holds only the GPU), "
            "or enable ACS for that slot in the firmware; nothing was written.")


def plan_host(inputs: HostPrepInputs, facts: HostFacts, owner: str) -> HostPlan:
    """Desired host state for ``owner``'s GPUs, as changes against ``facts``."""
    if not _OWNER.match(owner):
        raise PlanError(f"owner {owner!r} must be letters, digits, '.', '_', '-' and '/' (project/stack)")
    vfio_blocks = parse_blocks(facts.files.get(VFIO_FILE))
    refusals, notes, defer_isolation = _refusals(inputs, facts, owner, vfio_blocks)
    path = cmdline_file(facts)
    current_cmdline_file = facts.files.get(path)
    if path == KERNEL_CMDLINE and not (current_cmdline_file or "").strip():
        refusals.append(Refusal(None, f"this host boots with systemd-boot ({facts.bootloader_evidence}) but {KERNEL_CMDLINE} is missing or empty; "
                                "creating it without the root= parameters would leave the host unbootable. Restore it (see `proxmox-boot-tool`) and re-run."))
    if path == GRUB_DEFAULT and current_cmdline_file is None:
        refusals.append(Refusal(None, f"this host boots with GRUB ({facts.bootloader_evidence}) but {GRUB_DEFAULT} is missing; restore it and re-run."))
    tokens, token_reasons = wanted_cmdline_tokens(inputs, facts)
    new_cmdline_file = None
    if current_cmdline_file is not None and not refusals:
        try:
            new_cmdline_file = _edit(path, current_cmdline_file, tokens)
        except PlanError as error:
            refusals.append(Refusal(None, f"{error}; add {' '.join(tokens)} by hand"))
    if refusals:
        return HostPlan(owner=owner, refusals=tuple(refusals), notes=tuple(notes), allow_reboot=inputs.allow_reboot)

    functions = [fn for gpu in inputs.gpus for fn in facts.slot_functions(gpu.address)]
    files: list[FileChange] = []
    noops: list[str] = []

    def want(file_path: str, content: str | None, reason: str, ok: str) -> None:
        current = facts.files.get(file_path)
        if current == content:
            noops.append(f"{file_path} {ok}")
        else:
            files.append(FileChange(file_path, current, content, reason))

    want(BLACKLIST_FILE, blacklist_content(), f"keep {', '.join(BLACKLISTED)} off the GPU so vfio-pci can claim it",
         "already blacklists the host GPU drivers")
    virqfd = "vfio_virqfd is part of vfio from kernel 6.2" if facts.kernel_version >= (6, 2) else "kernel older than 6.2 also needs vfio_virqfd"
    want(MODULES_LOAD_FILE, modules_load_content(facts.kernel_version), f"load the VFIO modules at boot ({virqfd}; running {facts.kernel_release})",
         "already loads the VFIO modules")
    blocks = dict(vfio_blocks)
    blocks[owner] = Block(owner, tuple((fn.address, fn.vendor_device, fn.class_code) for fn in functions))
    ids = ",".join(sorted({fn.vendor_device for fn in functions}))
    want(VFIO_FILE, render_vfio_file(blocks), f"bind {ids} to vfio-pci (every function of {', '.join(g.address for g in inputs.gpus)})",
         f"already binds {ids} to vfio-pci")
    if new_cmdline_file is not None and new_cmdline_file != current_cmdline_file:
        value = _cmdline_of(path, current_cmdline_file or "")
        added = [t for t in tokens if t not in value.split()]
        files.append(FileChange(path, current_cmdline_file, new_cmdline_file,
                                f"kernel command line ({facts.bootloader}): add {' '.join(added)}; " + "; ".join(token_reasons)))
    elif tokens:
        noops.append(f"{path} already has {' '.join(tokens)}")
    else:
        noops.append(f"{path}: no kernel parameter needed ({facts.cpu_vendor} CPU, kernel {facts.kernel_release}, iommu=pt not asked)")
    if facts.cpu_vendor == "amd" and inputs.intel_iommu == "on":
        notes.append("host.intelIommu is on but the CPU is AMD: intel_iommu is never added on AMD")

    commands = _commands(files, facts, path)
    if not commands:
        noops.append("no initramfs or bootloader refresh: none of their inputs changed")
    reboot_reasons = _reboot_reasons(tokens, functions, facts)
    if not reboot_reasons:
        noops.append(f"no reboot: the running kernel has {' '.join(tokens) or 'what it needs'} and every function is bound to vfio-pci")
    modules_file = facts.files.get(ETC_MODULES) or ""
    if facts.kernel_version >= (6, 2) and re.search(r"^\s*vfio_virqfd\b", modules_file, re.M):
        notes.append(f"{ETC_MODULES} lists vfio_virqfd, which kernel {facts.kernel_release} no longer has ('Failed to find module'); you may remove that line")
    return HostPlan(
        owner=owner, files=tuple(files), commands=tuple(commands), reboot=bool(reboot_reasons),
        reboot_reason="; ".join(reboot_reasons), noops=tuple(noops), notes=tuple(notes), cleanup=facts.stale_temps,
        wanted_cmdline=tuple(tokens), functions=tuple(fn.address for fn in functions),
        check_isolation_after_boot=defer_isolation, allow_reboot=inputs.allow_reboot,
    )


def _commands(files: list[FileChange], facts: HostFacts, cmdline_path: str) -> list[Command]:
    changed = {change.path for change in files}
    commands = []
    initramfs_inputs = changed & {BLACKLIST_FILE, VFIO_FILE, MODULES_LOAD_FILE}
    if initramfs_inputs or "update-initramfs" in facts.pending:
        why = f"{', '.join(sorted(initramfs_inputs))} changed" if initramfs_inputs else "an interrupted run left it pending"
        commands.append(Command("update-initramfs", f"the initramfs loads vfio-pci early; {why}"))
    refresh = "update-grub" if facts.bootloader.startswith("grub") and not facts.boot_tool_managed else "proxmox-boot-tool-refresh"
    reasons = []
    if cmdline_path in changed:
        reasons.append(f"{cmdline_path} changed")
    if initramfs_inputs and facts.boot_tool_managed:
        reasons.append("proxmox-boot-tool copies the new initramfs to the ESP(s)")
    if any(name in facts.pending for name in ("update-grub", "proxmox-boot-tool-refresh")):
        reasons.append("an interrupted run left it pending")
    if reasons:
        commands.append(Command(refresh, f"{facts.bootloader} boot configuration: " + "; ".join(reasons)))
    return commands


def _reboot_reasons(tokens: list[str], functions: list[PciFunction], facts: HostFacts) -> list[str]:
    running = facts.cmdline.split()
    reasons = []
    missing = [t for t in tokens if t not in running]
    if missing:
        reasons.append(f"the running kernel lacks {' '.join(missing)}")
    if not facts.iommu_active:
        reasons.append("the IOMMU is not active yet")
    unbound = [f"{fn.address} ({fn.driver or 'no driver'})" for fn in functions if fn.driver != "vfio-pci"]
    if unbound:
        reasons.append(f"not bound to vfio-pci yet: {', '.join(unbound)}")
    return reasons


# --------------------------------------------------------------------------
# Verification (pure): is the running host what the plan wanted?
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyReport:
    problems: tuple[str, ...]
    checks: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_host(inputs: HostPrepInputs, facts: HostFacts, owner: str) -> VerifyReport:
    """Running-state checks: IOMMU on, groups isolated, every function on
    vfio-pci, the command line holds what was planned, nothing left to write."""
    problems, checks = [], []
    if not facts.iommu_active:
        problems.append("the IOMMU is not active: enable VT-d (Intel) or AMD-Vi (AMD) in the firmware, and check the kernel command line")
    else:
        checks.append("IOMMU active")
    for gpu in inputs.gpus:
        functions = facts.slot_functions(gpu.address)
        if not functions:
            problems.append(f"{gpu.address}: no such PCI device on the host")
            continue
        if facts.iommu_active:
            problem = isolation_problem(gpu, functions, facts)
            if problem:
                problems.append(problem.replace("; nothing was written.", ". The host files are written; run undo to revert them."))
            first = functions[0]
            if gpu.iommu_group is not None and first.iommu_group != gpu.iommu_group:
                problems.append(f"{PROJECT_KEY}:{gpu.key('iommuGroup')}: {gpu.iommu_group!r}, but {gpu.address} is in IOMMU group {first.iommu_group}")
        for fn in functions:
            if fn.driver == "vfio-pci":
                checks.append(f"{fn.address} ({fn.vendor_device}) bound to vfio-pci")
            else:
                problems.append(f"{fn.address} ({fn.vendor_device} {fn.kind}) is bound to {fn.driver or 'no driver'}, not vfio-pci "
                                "(check `lspci -nnk -s " + fn.address + "` and `dmesg | grep -i vfio`)")
    tokens, _ = wanted_cmdline_tokens(inputs, facts)
    missing = [t for t in tokens if t not in facts.cmdline.split()]
    if missing:
        problems.append(f"/proc/cmdline lacks {' '.join(missing)} (running: {facts.cmdline})")
    elif tokens:
        checks.append(f"/proc/cmdline has {' '.join(tokens)}")
    try:
        plan = plan_host(inputs, facts, owner)
    except PlanError as error:
        problems.append(str(error))
    else:
        if plan.files or plan.commands:
            pending = [c.path for c in plan.files] + [" ".join(c.argv) for c in plan.commands]
            problems.append(f"host files are not as planned: {', '.join(pending)} still to do")
    return VerifyReport(tuple(problems), tuple(checks))


# --------------------------------------------------------------------------
# Undo
# --------------------------------------------------------------------------


def restore_cmdline(path: str, current: str, original: str) -> tuple[str, str]:
    """(content, reason) that takes back only this program's kernel parameters.
    When nothing else changed since, that is the original, byte for byte."""
    try:
        current_tokens = _cmdline_of(path, current).split()
        original_tokens = _cmdline_of(path, original).split()
    except PlanError:
        return original, "restore the original (the current file cannot be parsed)"
    ours = [t for t in current_tokens if _key(t) in _MANAGED_KEYS and t not in original_tokens]
    if _edit(path, original, ours) == current:
        return original, "restore the original, byte for byte"
    # Someone else edited the file since: take back only our parameters.
    restored = [t for t in current_tokens if t not in ours]
    for token in ours:
        before = next((t for t in original_tokens if _key(t) == _key(token)), None)
        if before:
            restored.append(before)
    value = _cmdline_of(path, current)
    new_value = " ".join(restored)
    if path == GRUB_DEFAULT:
        index, _, quote = grub_value(current)
        lines = current.splitlines(keepends=True)
        assert index is not None
        match = _GRUB_LINE.match(lines[index].rstrip("\r\n"))
        assert match is not None
        ending = lines[index][len(lines[index].rstrip("\r\n")):]
        lines[index] = f"{match.group('lead')}{quote}{new_value}{quote}{match.group('trail')}{ending}"
        return "".join(lines), "the file changed since it was edited: remove only the parameters proxmox-talos-gpu added"
    return current.replace(value, new_value, 1), "the file changed since it was edited: remove only the parameters proxmox-talos-gpu added"


def plan_undo(facts: HostFacts, owner: str, *, allow_reboot: bool = True, reboot_on_destroy: bool = False) -> HostPlan:
    """Remove ``owner``'s block; the last stack out restores every original."""
    if not _OWNER.match(owner):
        raise PlanError(f"owner {owner!r} must be letters, digits, '.', '_', '-' and '/' (project/stack)")
    blocks = parse_blocks(facts.files.get(VFIO_FILE))
    ours = blocks.pop(owner, None)
    files: list[FileChange] = []
    noops: list[str] = []
    notes: list[str] = []
    forget: list[str] = []
    owned_present = {p for p in (VFIO_FILE, BLACKLIST_FILE, MODULES_LOAD_FILE) if facts.files.get(p) is not None}
    if blocks:
        if ours is None:
            noops.append(f"nothing to undo because {VFIO_FILE} has no block for {owner} (other stacks: {', '.join(sorted(blocks))})")
        else:
            files.append(FileChange(VFIO_FILE, facts.files.get(VFIO_FILE), render_vfio_file(blocks),
                                    f"remove the block of {owner}; {len(blocks)} other stack(s) keep theirs"))
            noops.append(f"the kernel command line, blacklist and module list stay: stack(s) {', '.join(sorted(blocks))} still pass GPUs through")
            shared = sorted({vd for _, vd, _ in ours.functions} & {vd for b in blocks.values() for _, vd, _ in b.functions})
            if shared:
                notes.append(f"{', '.join(shared)} stay bound to vfio-pci: another stack passes through the same model")
    elif ours is None and not facts.originals and not owned_present:
        noops.append(f"nothing to undo because proxmox-talos-gpu left nothing on this host for {owner}")
    else:
        for path in sorted(set(facts.originals) | owned_present):
            current = facts.files.get(path)
            if path in facts.originals:
                original = facts.originals[path]
                forget.append(path)
                if current == original:
                    noops.append(f"{path} is already as it was before proxmox-talos-gpu")
                    continue
                if original is None:
                    files.append(FileChange(path, current, None, "created by proxmox-talos-gpu: remove it"))
                elif current is not None and path in (GRUB_DEFAULT, KERNEL_CMDLINE):
                    content, reason = restore_cmdline(path, current, original)
                    files.append(FileChange(path, current, content, reason))
                else:
                    files.append(FileChange(path, current, original, "restore the original, byte for byte"))
            else:
                files.append(FileChange(path, current, None, "a proxmox-talos-gpu file without a recorded original: remove it"))
    cmdline_path = cmdline_file(facts)
    commands = _commands(files, facts, cmdline_path)
    changed = bool(files)
    reboot = changed and reboot_on_destroy and allow_reboot
    if changed and not reboot:
        notes.append("the running host keeps the GPU on vfio-pci until its next reboot" + ("" if reboot_on_destroy else " (host.rebootOnDestroy is false)"))
    return HostPlan(owner=owner, files=tuple(files), commands=tuple(commands), reboot=reboot,
                    reboot_reason="host.rebootOnDestroy is true" if reboot else "", noops=tuple(noops), notes=tuple(notes),
                    cleanup=facts.stale_temps, forget_originals=tuple(forget), allow_reboot=allow_reboot)
