"""The host planner: (inputs from config, host facts, owner) -> HostPlan.

Pure: no SSH, no clock, no filesystem. Every file change and command carries
its reason; everything left alone says why ("nothing to do because ...").
A refusal plan holds no changes at all, so refusing writes nothing.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from components.hostprep import ha
from components.hostprep.binding import Rebind, plan_live_binding, plan_unbinding
from components.hostprep.facts import (
    BLACKLIST_FILE,
    ETC_MODULES,
    GRUB_D,
    GRUB_DEFAULT,
    KERNEL_CMDLINE,
    MODULES_LOAD_FILE,
    OWNED_FILES,
    STATE_DIR,
    VFIO_FILE,
    Guest,
    HostFacts,
    PciFunction,
    shown,
)

if TYPE_CHECKING:
    from components.config import StackConfig

PROJECT_KEY = "proxmox-talos-gpu"
BLACKLISTED = ("nouveau", "nvidia", "nvidia_drm", "nvidia_modeset", "nvidia_uvm", "nvidiafb")
VFIO_MODULES = ("vfio", "vfio_iommu_type1", "vfio_pci")
_OWNER = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
_MANAGED_KEYS = ("intel_iommu", "iommu")  # kernel parameters this program may set
_OUR_TOKENS = ("intel_iommu=on", "iommu=pt")  # the values it sets
# Drivers that may claim a GPU's companion function before vfio-pci does.
_SOFTDEP_BY_CLASS = {"0403": "snd_hda_intel", "0c03": "xhci_pci", "0c80": "i2c_nvidia_gpu"}
KEPT_DIR = f"{STATE_DIR}/kept"  # originals set aside when a file changed by hand since it was edited

COMMANDS: dict[str, tuple[str, ...]] = {
    "update-initramfs": ("update-initramfs", "-u", "-k", "all"),
    "update-grub": ("update-grub",),
    "proxmox-boot-tool-refresh": ("proxmox-boot-tool", "refresh"),
}
RUNNING_GUESTS = ("refuse", "stop")
HAND_EDITS = ("refuse", "overwrite")


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
    running_guests: str = "refuse"  # "refuse" | "stop": may a reboot stop guests other than our own VM?
    own_vmids: tuple[int, ...] = ()  # this stack's VM(s): a reboot may stop them (after draining the node)
    node_name: str | None = None  # this stack's Kubernetes node, drained before a reboot stops its VM
    hand_edits: str = "refuse"  # "refuse" | "overwrite": lines added by hand to files this program wrote

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpus": [{"address": g.address, "id": g.id, "subsystem_id": g.subsystem_id, "iommu_group": g.iommu_group, "index": g.index} for g in self.gpus],
            "intel_iommu": self.intel_iommu, "iommu_passthrough": self.iommu_passthrough,
            "allow_reboot": self.allow_reboot, "reboot_on_destroy": self.reboot_on_destroy,
            "running_guests": self.running_guests, "own_vmids": list(self.own_vmids), "node_name": self.node_name,
            "hand_edits": self.hand_edits,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostPrepInputs:
        gpus = tuple(GpuSpec(address=g["address"], id=g.get("id"), subsystem_id=g.get("subsystem_id"),
                             iommu_group=None if g.get("iommu_group") is None else int(g["iommu_group"]),
                             index=None if g.get("index") is None else int(g["index"])) for g in data["gpus"])
        return cls(gpus=gpus, intel_iommu=data.get("intel_iommu", "auto"), iommu_passthrough=bool(data.get("iommu_passthrough", True)),
                   allow_reboot=bool(data.get("allow_reboot", True)), reboot_on_destroy=bool(data.get("reboot_on_destroy")),
                   running_guests=data.get("running_guests") or "refuse", own_vmids=tuple(int(v) for v in data.get("own_vmids") or ()),
                   node_name=data.get("node_name") or None, hand_edits=data.get("hand_edits") or "refuse")


def inputs_from_config(cfg: StackConfig) -> HostPrepInputs:
    return HostPrepInputs(
        gpus=tuple(GpuSpec(address=g.address, id=g.id, subsystem_id=g.subsystem_id, iommu_group=g.iommu_group, index=i) for i, g in enumerate(cfg.gpus)),
        intel_iommu=cfg.host.intel_iommu,
        iommu_passthrough=cfg.host.iommu_passthrough_mode,
        allow_reboot=cfg.host.allow_reboot,
        reboot_on_destroy=cfg.host.reboot_on_destroy,
        running_guests=cfg.host.running_guests,
        own_vmids=(cfg.vm.vm_id,),
        node_name=cfg.node_name,
        hand_edits=cfg.host.hand_edits,
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
class RebootImpact:
    """What a reboot of the host stops, and whether it may go ahead."""

    guests_known: bool  # False: the guests were not read (the engine reads them before rebooting)
    stops: tuple[Guest, ...] = ()  # running guests the reboot stops (Proxmox shuts them down)
    own: tuple[Guest, ...] = ()  # of those, this stack's VM(s)
    blocked: str = ""  # non-empty: host.runningGuests is refuse and the reboot waits for consent
    drain_node: str | None = None  # this stack's Kubernetes node: drained before, uncordoned after
    notes: tuple[str, ...] = ()
    ha_policy: str = "conditional"  # datacenter.cfg ha: shutdown_policy: what HA does with its guests
    moved: tuple[Guest, ...] = ()  # running HA guests HA migrates away before the reboot (not stopped)

    @property
    def others(self) -> tuple[Guest, ...]:
        return tuple(g for g in self.stops if g not in self.own)

    def lines(self, policy: str) -> list[str]:
        if not self.guests_known:
            if self.blocked:  # the read failed and nothing lets the reboot go ahead without it
                return [f"reboot withheld (host.runningGuests: {policy}): {self.blocked}"] + list(self.notes)
            return ["guests the reboot stops: not read yet (they are read before any reboot)"] + list(self.notes)
        out = []
        if self.stops:
            out.append("the reboot stops these running guests (Proxmox shuts them down; those with onboot=1 start again):")
            for guest in self.stops:
                onboot = f", {ha.fate(guest, self.ha_policy)}" if ha.ha_managed(guest) else ", onboot" if guest.onboot else ", no onboot: stays off"
                own = ", this stack's VM" if guest in self.own else ""
                out.append(f"  - {guest.label}{onboot}{own}")
        else:
            out.append("the reboot stops no running guest")
        for guest in self.moved:
            out.append(f"  - {guest.label} is not stopped: {ha.fate(guest, self.ha_policy)}")
        if self.drain_node:
            out.append(f"before the reboot: cordon and drain Kubernetes node {self.drain_node}; uncordon it once it is Ready again")
        if self.blocked:
            out.append(f"reboot withheld (host.runningGuests: {policy}): {self.blocked}")
        out += list(self.notes)
        return out


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
    archive_originals: tuple[str, ...] = ()  # undo: originals set aside (the file changed by hand since)
    records: tuple[tuple[str, str | None], ...] = ()  # what this program last wrote to a file (None: forget)
    wanted_cmdline: tuple[str, ...] = ()  # must be on /proc/cmdline after boot
    functions: tuple[str, ...] = ()  # must be bound to vfio-pci after boot
    check_isolation_after_boot: bool = False
    allow_reboot: bool = True  # False: the reboot is left to the admin (read only when the plan reboots)
    impact: RebootImpact | None = None  # set when a reboot is planned
    running_guests: str = "refuse"
    rebinds: tuple[Rebind, ...] = ()  # functions moved between drivers on the running host (no reboot)

    @property
    def refused(self) -> bool:
        return bool(self.refusals)

    @property
    def changes_host(self) -> bool:
        return bool(self.files or self.commands or self.cleanup or self.forget_originals or self.archive_originals or self.records
                    or self.rebinds)

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
                out.extend("    " + line for line in change.diff().splitlines())
        for path in self.cleanup:
            out.append(f"remove {path}: temp file left by an interrupted run")
        for command in self.commands:
            out.append(f"run `{' '.join(command.argv)}`: {command.reason}")
        out.extend(rebind.line() for rebind in self.rebinds)
        if self.reboot:
            out.append(f"reboot: {self.reboot_reason}" + ("" if self.allow_reboot else " (host.allowReboot is false: reboot by hand)"))
            if self.impact is not None:
                out.extend(self.impact.lines(self.running_guests))
        for noop in self.noops:
            out.append(f"ok: {noop}")
        for note in self.notes:
            out.append(f"note: {note}")
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        impact = self.impact
        return {
            "owner": self.owner,
            "refusals": [{"key": r.key and f"{PROJECT_KEY}:{r.key}", "message": r.message} for r in self.refusals],
            "files": [{"path": c.path, "action": "create" if c.before is None else "delete" if c.after is None else "update",
                       "reason": c.reason, "diff": c.diff()} for c in self.files],
            "cleanup": list(self.cleanup),
            "commands": [{"command": list(c.argv), "reason": c.reason} for c in self.commands],
            "rebinds": [{"address": r.address, "from": r.current, "to": r.target, "reason": r.reason, "forget_only": r.forget}
                        for r in self.rebinds],
            "reboot": self.reboot, "reboot_reason": self.reboot_reason,
            "reboot_stops": None if impact is None or not impact.guests_known else
            [{"vmid": g.vmid, "name": g.name, "type": g.type, "onboot": g.onboot, "own": g in impact.own, "hastate": g.hastate,
              "ha": ha.fate(g, impact.ha_policy) if ha.ha_managed(g) else None} for g in impact.stops],
            "reboot_moves": [] if impact is None else [{"vmid": g.vmid, "name": g.name, "ha": ha.fate(g, impact.ha_policy)} for g in impact.moved],
            "reboot_withheld": impact.blocked if impact else "",
            "drain_node": impact.drain_node if impact else None,
            "noops": list(self.noops), "notes": list(self.notes),
            "wanted_cmdline": list(self.wanted_cmdline), "functions": list(self.functions),
        }


# --------------------------------------------------------------------------
# Kernel command line editing (pure)
# --------------------------------------------------------------------------


def _key(token: str) -> str:
    return token.partition("=")[0]


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


def is_grub_file(path: str) -> bool:
    return path == GRUB_DEFAULT or (path.startswith(GRUB_D + "/") and path.endswith(".cfg"))


def is_cmdline_file(path: str) -> bool:
    return path == KERNEL_CMDLINE or is_grub_file(path)


_GRUB_LINE = re.compile(r"^(?P<lead>\s*(?:export\s+)?GRUB_CMDLINE_LINUX_DEFAULT=)(?P<rest>.*)$")
_GRUB_OTHER = re.compile(r"^\s*(?:export\s+|readonly\s+|unset\s+)?GRUB_CMDLINE_LINUX_DEFAULT\s*(\+=|$|\s)")
_SELF = r"\$(?:\{GRUB_CMDLINE_LINUX_DEFAULT\}|GRUB_CMDLINE_LINUX_DEFAULT\b)"
_APPEND = re.compile(rf"^{_SELF}(?:\s+(?P<x>.*))?$")
_PREPEND = re.compile(rf"^(?P<x>.*?)\s+{_SELF}$")


@dataclass(frozen=True)
class GrubAssignment:
    """One ``GRUB_CMDLINE_LINUX_DEFAULT=`` line, as update-grub's shell reads it."""

    path: str
    line: int  # 0-based
    kind: str  # "plain" (sets the value) | "append" | "prepend" (extends the value set before)
    value: str  # the value, or the text added
    quote: str
    lead: str
    trail: str  # whitespace and a comment after the value, kept on a rewrite


def _grub_assignment(path: str, index: int, line: str) -> GrubAssignment | None:
    """Parse one line; raises PlanError, naming the file and line, for shell
    this program will not rewrite."""
    where = f"{path} line {index + 1} ({shown(line.strip(), 80)})"
    match = _GRUB_LINE.match(line)
    if not match:
        if _GRUB_OTHER.match(line) and "+=" in line:
            raise PlanError(f"{where} uses +=, which update-grub's /bin/sh does not understand")
        return None
    rest = match.group("rest")
    if rest[:1] in ("'", '"'):
        quote = rest[0]
        end = rest.find(quote, 1)
        if end < 0:
            raise PlanError(f"{where} has an unterminated quote")
        inner, after = rest[1:end], rest[end + 1:]
    else:
        quote = ""
        inner = re.match(r"[^\s#;&|<>()'\"`\\]*", rest).group(0)  # type: ignore[union-attr]
        after = rest[len(inner):]
    # After the value: nothing, or whitespace and a comment (a `#` right after
    # a closing quote would be part of the word, so it needs the space).
    if not re.fullmatch(r"\s*|\s+#.*", after):
        raise PlanError(f"{where} continues after the value with shell syntax this program will not rewrite")
    if "`" in inner or "\\" in inner or (quote == "'" and "$" in inner):
        raise PlanError(f"{where} uses shell syntax this program will not rewrite")
    kind, value = "plain", inner
    if "$" in inner:
        append, prepend = _APPEND.match(inner), _PREPEND.match(inner)
        if append and "$" not in (added := append.group("x") or ""):
            kind, value = "append", added
        elif prepend and "$" not in prepend.group("x"):
            kind, value = "prepend", prepend.group("x")
        else:
            raise PlanError(f"{where} uses shell expansion this program will not rewrite")
    return GrubAssignment(path, index, kind, value, quote, match.group("lead"), after)


def grub_assignments(path: str, content: str) -> list[GrubAssignment]:
    found = []
    for index, line in enumerate(content.splitlines()):  # a comment matches neither pattern: both begin at the first word
        assignment = _grub_assignment(path, index, line)
        if assignment:
            found.append(assignment)
    return found


@dataclass(frozen=True)
class GrubCmdline:
    """GRUB_CMDLINE_LINUX_DEFAULT the way update-grub (grub-mkconfig) gets it:
    /etc/default/grub sourced first, then /etc/default/grub.d/*.cfg in order,
    the last plain assignment winning and later ``$GRUB_CMDLINE_LINUX_DEFAULT
    …`` lines extending it."""

    base: GrubAssignment | None  # the assignment that decides the value
    additions: tuple[GrubAssignment, ...]  # extensions after it

    @property
    def path(self) -> str:
        """The file that decides the value (where this program edits it)."""
        return self.base.path if self.base else GRUB_DEFAULT

    @property
    def effective(self) -> str:
        value = self.base.value if self.base else ""
        for addition in self.additions:
            value = f"{value} {addition.value}" if addition.kind == "append" else f"{addition.value} {value}"
        return " ".join(value.split())


def grub_cmdline(files: dict[str, str | None]) -> GrubCmdline:
    # Sorting names sorts their UTF-8 bytes (the shell's glob order), and /etc/default/grub
    # sorts before every /etc/default/grub.d/ name, as update-grub sources it first.
    order = sorted((p, c) for p, c in files.items() if c is not None and is_grub_file(p))
    base: GrubAssignment | None = None
    additions: list[GrubAssignment] = []
    for path, content in order:
        for assignment in grub_assignments(path, content):
            if assignment.kind == "plain":
                base, additions = assignment, []
            else:
                additions.append(assignment)
    return GrubCmdline(base, tuple(additions))


def _set_grub_value(content: str, assignment: GrubAssignment, value: str) -> str:
    lines = content.splitlines(keepends=True)
    line = lines[assignment.line]
    ending = line[len(line.rstrip("\r\n")):]
    quote = assignment.quote or ('"' if (" " in value or not value) else "")
    lines[assignment.line] = f"{assignment.lead}{quote}{value}{quote}{assignment.trail}{ending}"
    return "".join(lines)


def edit_grub_files(files: dict[str, str | None], wanted: list[str]) -> tuple[str, str]:
    """(file that decides GRUB_CMDLINE_LINUX_DEFAULT, its new content) with
    each wanted token in the effective value. Raises PlanError, naming the
    file and line, where that cannot be done by editing one value."""
    grub = grub_cmdline(files)
    effective = grub.effective.split()
    missing = []
    for token in wanted:
        same = [t for t in effective if _key(t) == _key(token)]
        if same and all(t == token for t in same):
            continue
        for addition in grub.additions:
            clash = [t for t in addition.value.split() if _key(t) == _key(token) and t != token]
            if clash:
                raise PlanError(f"{addition.path} line {addition.line + 1} adds {clash[0]} to GRUB_CMDLINE_LINUX_DEFAULT after "
                                f"{grub.path} sets it; change it to {token} (or remove it) and re-run")
        missing.append(token)
    path = grub.path
    content = files.get(path) or ""
    if not missing:
        return path, content
    if grub.base is None:
        if grub.additions:
            first = grub.additions[0]
            raise PlanError(f"GRUB_CMDLINE_LINUX_DEFAULT is only extended ({first.path} line {first.line + 1}), never set; "
                            f"set it once in {GRUB_DEFAULT} (e.g. GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\") and re-run")
        sep = "" if content.endswith("\n") or not content else "\n"
        return path, f'{content}{sep}GRUB_CMDLINE_LINUX_DEFAULT="{" ".join(missing)}"\n'
    return path, _set_grub_value(content, grub.base, edit_tokens(grub.base.value, missing))


def edit_grub(content: str, wanted: list[str]) -> str:
    """Minimal edit of one /etc/default/grub: only GRUB_CMDLINE_LINUX_DEFAULT's value."""
    return edit_grub_files({GRUB_DEFAULT: content}, wanted)[1]


def kernel_cmdline_value(content: str) -> str:
    lines = [line for line in content.splitlines() if line.strip()]
    if len(lines) != 1:
        raise PlanError(f"{KERNEL_CMDLINE} must hold exactly one line (it holds {len(lines)})")
    return lines[0]


def edit_kernel_cmdline(content: str, wanted: list[str]) -> str:
    """Minimal edit of /etc/kernel/cmdline (one line), keeping its line ending."""
    value = kernel_cmdline_value(content)
    new_value = edit_tokens(value, wanted)
    if new_value.split() == value.split():  # every wanted parameter is there: the file stays byte for byte
        return content
    return content.replace(value, new_value, 1)


def cmdline_file(facts: HostFacts) -> str:
    """The file that decides the kernel command line on this host."""
    if facts.bootloader == "systemd-boot":
        return KERNEL_CMDLINE
    return grub_cmdline(facts.files).path


def _cmdline_of(path: str, content: str) -> str | None:
    """The command-line value one file sets (None: a GRUB file that no longer sets it)."""
    if path == KERNEL_CMDLINE:
        return kernel_cmdline_value(content)
    plain = [a for a in grub_assignments(path, content) if a.kind == "plain"]
    return plain[-1].value if plain else None


def _set_cmdline(path: str, content: str, value: str) -> str:
    if path == KERNEL_CMDLINE:
        return content.replace(kernel_cmdline_value(content), value, 1)
    plain = [a for a in grub_assignments(path, content) if a.kind == "plain"]
    return _set_grub_value(content, plain[-1], value)


def _edit(path: str, content: str, wanted: list[str]) -> str | None:
    """``content`` as the planner's edit leaves it; None where the planner would not edit that file."""
    if path == KERNEL_CMDLINE:
        return edit_kernel_cmdline(content, wanted)
    current = _cmdline_of(path, content)
    if current is None:  # never set: the planner adds the line to /etc/default/grub, and edits no other such file
        return edit_grub(content, wanted) if path == GRUB_DEFAULT else None
    return _set_cmdline(path, content, edit_tokens(current, wanted))


# --------------------------------------------------------------------------
# The managed vfio file: one block per stack, derived lines after them
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One stack's block; the stack is the key it is filed under."""

    functions: tuple[tuple[str, str, str], ...]  # (address, vendor:device, class)


_BLOCK = re.compile(r"^# BEGIN (?P<owner>\S+)\n(?P<body>(?:.*\n)*?)# END (?P=owner)$", re.M)
_FUNCTION_LINE = re.compile(r"^# function (\S+) ([0-9a-f]{4}:[0-9a-f]{4}) (0x[0-9a-f]{6})$")
_VFIO_HEADER = (
    "# Managed by proxmox-talos-gpu: binds passed-through GPUs to vfio-pci.",
    "# One block per stack; each stack edits only its own block, and the lines",
    "# after the blocks are derived from all of them. Do not edit by hand.",
)


def parse_blocks(content: str | None) -> dict[str, Block]:
    blocks: dict[str, Block] = {}
    for match in _BLOCK.finditer(content or ""):
        functions = tuple(m.groups() for m in (_FUNCTION_LINE.match(line) for line in match.group("body").splitlines()) if m)
        blocks[match.group("owner")] = Block(functions)  # type: ignore[arg-type]
    return blocks


def render_vfio_file(blocks: dict[str, Block]) -> str | None:
    """The whole file from every stack's block; None when no block is left.
    `options vfio-pci ids=` is last-wins, so there is exactly one such line,
    the union of all blocks."""
    if not blocks:
        return None
    out = list(_VFIO_HEADER)
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
# Files this program wrote, edited by hand since
# --------------------------------------------------------------------------


def _written_by_us(path: str, line: str) -> bool:
    """Could this program have written ``line`` to ``path`` (any version)?
    For hosts prepared before it kept a record of what it wrote."""
    if path == BLACKLIST_FILE:
        return line in blacklist_content().splitlines()
    if path == MODULES_LOAD_FILE:
        return line in modules_load_content((6, 1)).splitlines()  # the newest kernel still given vfio_virqfd: the longest list
    if path == VFIO_FILE:
        return (line in _VFIO_HEADER or bool(re.fullmatch(r"# (BEGIN|END) \S+", line)) or bool(_FUNCTION_LINE.match(line))
                or bool(re.fullmatch(r"options vfio-pci ids=[0-9a-f]{4}:[0-9a-f]{4}(,[0-9a-f]{4}:[0-9a-f]{4})*", line))
                or line in {f"softdep {m} pre: vfio-pci" for m in _SOFTDEP_BY_CLASS.values()})
    return True


def written_record(path: str, facts: HostFacts) -> str | None:
    """What this program last wrote to ``path``. A run interrupted between
    recording and writing leaves the previous record as ``<path>.prev``, and
    the file may still hold that one."""
    record, previous = facts.written.get(path), facts.written.get(path + ".prev")
    return previous if previous is not None and facts.files.get(path) == previous else record


def hand_edits(path: str, facts: HostFacts) -> list[str]:
    """The lines of ``path`` changed since this program wrote it, as `+line`
    (added by hand) and `-line` (removed by hand); [] when none."""
    current = facts.files.get(path)
    if current is None:
        return []
    record = written_record(path, facts)
    if record is None:
        return [f"+{line}" for line in current.splitlines() if line.strip() and not _written_by_us(path, line)]
    if current == record:
        return []
    now, then = (Counter(line for line in text.splitlines() if line.strip()) for text in (current, record))
    changes = [f"+{line}" for line in (now - then).elements()] + [f"-{line}" for line in (then - now).elements()]
    return changes or ["(only blank lines or line endings changed)"]


def _hand_edit_refusal(path: str, edits: list[str], action: str) -> Refusal:
    lines = "; ".join(f"`{shown(e, 100)}`" for e in edits[:8]) + (f" and {len(edits) - 8} more" if len(edits) > 8 else "")
    return Refusal(None, (
        f"{path} was edited by hand since proxmox-talos-gpu wrote it ({lines}); {action} would drop that. "
        "Move your lines to a file of your own in the same folder and re-run, or let this run replace them: "
        "set host.handEdits: overwrite (CLI: --hand-edits overwrite). Nothing was written."))


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
        modules.append("vfio_virqfd")  # a separate module only before 6.2 (pve-docs qm-pci-passthrough)
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


def static_tokens(inputs: HostPrepInputs) -> tuple[str, ...]:
    """Tokens wanted on every CPU and kernel: the facts script checks them
    to decide, on the host, whether a reboot may be needed."""
    return ("iommu=pt",) if inputs.iommu_passthrough else ()


def _refusals(inputs: HostPrepInputs, facts: HostFacts, owner: str, blocks: dict[str, Block]) -> tuple[list[Refusal], list[str], bool]:
    """(refusals, notes, isolation must be checked after the first boot)."""
    refusals: list[Refusal] = []
    notes: list[str] = []
    running = facts.cmdline.split()
    kernel = facts.kernel_version
    defer_isolation = False

    if facts.bootloader_problem:
        refusals.append(Refusal(None, (
            f"cannot tell how this host boots: {facts.bootloader_problem}. Editing the wrong boot configuration would "
            "reboot for nothing, so nothing was written. Check `proxmox-boot-tool status` and `efibootmgr -v` on the host "
            "(pve-docs: \"Determine which Bootloader is Used\").")))

    # IOMMU: expected off (we turn it on) or off in the firmware (refuse).
    if not facts.iommu_active:
        if facts.cpu_vendor == "amd" and any(t in running for t in ("amd_iommu=off", "iommu=off")):
            refusals.append(Refusal(None, "the running kernel command line turns the IOMMU off (amd_iommu=off or iommu=off); remove it from the boot configuration first"))
        elif facts.cpu_vendor == "intel" and "intel_iommu=on" not in running and (kernel < (6, 8) or "intel_iommu=off" in running):
            defer_isolation = True
            notes.append(f"IOMMU is not active yet: expected on Intel with kernel {facts.kernel_release} without intel_iommu=on; "
                         "this plan turns it on, and IOMMU group isolation is checked right after the reboot")
        else:
            why = ("AMD CPUs have it on by default" if facts.cpu_vendor == "amd"  # the facts know no other vendor than these two
                   else "Intel CPUs have it on by default from kernel 6.8" if kernel >= (6, 8) else "intel_iommu=on is already on the command line")
            refusals.append(Refusal(None, (
                f"the IOMMU is not active although it should be ({why}): "
                "it is switched off in the firmware. Enable VT-d (Intel) or AMD-Vi/IOMMU and SVM (AMD) in the BIOS/UEFI setup, boot, and re-run. Nothing was written.")))

    claimed_other: set[str] = {address for o, block in blocks.items() if o != owner for address, _, _ in block.functions}
    ours: list[tuple[GpuSpec, PciFunction]] = []  # each function passed through, with the GPU it is a function of
    for gpu in inputs.gpus:
        functions = facts.slot_functions(gpu.address)
        first = facts.functions.get(gpu.address)
        if first is None:
            found = ", ".join(f"{a} ({d.vendor_device} {d.kind})" for a, d in facts.devices.items() if d.vendor_device.startswith("10de:") and not d.is_bridge)
            refusals.append(Refusal(gpu.key("address"), f"{gpu.address!r}: no such PCI device on the host" + (f"; NVIDIA devices present: {found}" if found else "")))
            continue
        ours.extend((gpu, fn) for fn in functions)
        if gpu.id and gpu.id != first.vendor_device:
            refusals.append(Refusal(gpu.key("id"), f"{gpu.id!r}, but {gpu.address} is {first.vendor_device} ({first.kind}); set the id lspci -nn shows"))
        if gpu.subsystem_id and first.subsystem_id and gpu.subsystem_id != first.subsystem_id:
            refusals.append(Refusal(gpu.key("subsystemId"), f"{gpu.subsystem_id!r}, but {gpu.address} reports subsystem {first.subsystem_id}"))
        if gpu.address in claimed_other:
            other = next(o for o, b in blocks.items() if o != owner and any(a == gpu.address for a, _, _ in b.functions))
            refusals.append(Refusal(gpu.key("address"), f"{gpu.address!r} is already passed through by stack {other}; one GPU can go to one VM"))
        if facts.iommu_active:
            unreadable = [fn.address for fn in functions if fn.iommu_group is None]
            if unreadable:
                refusals.append(Refusal(gpu.key("address"), (
                    f"the IOMMU is active but the IOMMU group of {', '.join(unreadable)} cannot be read "
                    "(no /sys/bus/pci/devices/<address>/iommu_group); its isolation cannot be checked, so nothing was written")))
                continue
            if gpu.iommu_group is not None and gpu.iommu_group != first.iommu_group:
                refusals.append(Refusal(gpu.key("iommuGroup"), f"{gpu.iommu_group!r}, but {gpu.address} is in IOMMU group {first.iommu_group}"))
            problem = isolation_problem(gpu, functions, facts)
            if problem:
                refusals.append(Refusal(gpu.key("address"), problem))

    # `ids=` binds by model: a same-model device that stays with the host would be taken too.
    claimed = {fn.address for _, fn in ours} | claimed_other
    for gpu, fn in ours:
        for other in facts.devices.values():
            if other.vendor_device == fn.vendor_device and other.address not in claimed:
                refusals.append(Refusal(gpu.key("id" if gpu.id else "address"), (
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
            f"{path} sets `{shown(line, 100)}`; vfio-pci options are last-wins, so two files fight over them. "
            f"Remove that line (proxmox-talos-gpu keeps the one ids= line in {VFIO_FILE}) and re-run.")))
    for token in running:
        if _key(token) in ("vfio-pci.ids", "vfio_pci.ids"):
            refusals.append(Refusal(None, f"the kernel command line sets {shown(token)}; it overrides {VFIO_FILE}. Remove it from the boot configuration and re-run."))
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


def reboot_impact(inputs: HostPrepInputs, facts: HostFacts) -> RebootImpact:
    """Which running guests a reboot stops, and whether host.runningGuests
    lets it go ahead. Proxmox shuts every guest down on the way down and
    starts those with onboot=1 again (pve-manager pve-guests.service:
    `pvesh create /nodes/localhost/stopall` / `startall`)."""
    if facts.guests is None:
        if facts.guests_problem and inputs.running_guests == "refuse":
            return RebootImpact(False, blocked=(
                f"cannot tell which guests run on this host ({facts.guests_problem}), and host.runningGuests is refuse. "
                "Fix the read (pvesh on the host), or re-run with host.runningGuests: stop (CLI: --running-guests stop) to reboot anyway."))
        notes = (f"note: the guests could not be read ({facts.guests_problem}); host.runningGuests is stop, so the reboot goes ahead",) \
            if facts.guests_problem else ()
        return RebootImpact(False, notes=notes)
    moved = tuple(g for g in facts.guests if ha.moves_away(g, facts.ha_policy))
    stops = tuple(g for g in facts.guests if g.running and g not in moved)
    own = tuple(g for g in stops if g.vmid in inputs.own_vmids)
    others = tuple(g for g in stops if g not in own)
    notes: list[str] = []
    drain = None
    if own:
        if inputs.node_name:
            drain = inputs.node_name
        else:
            notes.append(f"note: this stack's VM {own[0].vmid} runs, but no Kubernetes node name is known (--node-name): it is not drained first")
    if facts.ha_policy_note:
        notes.append(f"note: {facts.ha_policy_note}")
    for guest in own:
        if not guest.onboot and not ha.ha_managed(guest):
            notes.append(f"note: this stack's VM {guest.label} has no onboot: it stays off after the reboot (`qm set {guest.vmid} --onboot 1`, or start it by hand)")
    blocked = ""
    if others and inputs.running_guests == "refuse":
        mine = f" besides this stack's VM {', '.join(str(v) for v in inputs.own_vmids)}" if inputs.own_vmids else ""
        blocked = (
            f"the reboot would stop {len(others)} running guest(s){mine}: {', '.join(g.label for g in others)}. "
            "host.runningGuests is refuse (the default), so the host is not rebooted; every file is written and refreshed, "
            "so the change takes effect at the host's next reboot. To proceed, either shut those guests down yourself ("
            + ", ".join(f"`{g.tool} shutdown {g.vmid}`" for g in others)
            + ") and re-run, or re-run with host.runningGuests: stop (CLI: --running-guests stop): Proxmox then shuts every guest "
            "down gracefully and starts the ones with onboot=1 again.")
    return RebootImpact(True, stops, own, blocked, drain, tuple(notes), facts.ha_policy, moved)


def plan_host(inputs: HostPrepInputs, facts: HostFacts, owner: str) -> HostPlan:
    """Desired host state for ``owner``'s GPUs, as changes against ``facts``."""
    if not _OWNER.match(owner):
        raise PlanError(f"owner {owner!r} must be letters, digits, '.', '_', '-' and '/' (project/stack)")
    if inputs.running_guests not in RUNNING_GUESTS or inputs.hand_edits not in HAND_EDITS:
        raise PlanError(f"running_guests must be one of {RUNNING_GUESTS} and hand_edits one of {HAND_EDITS}")
    vfio_blocks = parse_blocks(facts.files.get(VFIO_FILE))
    refusals, notes, defer_isolation = _refusals(inputs, facts, owner, vfio_blocks)
    tokens, token_reasons = wanted_cmdline_tokens(inputs, facts)
    path, current_cmdline_file, new_cmdline_file = KERNEL_CMDLINE, facts.files.get(KERNEL_CMDLINE), None
    if facts.bootloader == "systemd-boot":
        if not (current_cmdline_file or "").strip():
            refusals.append(Refusal(None, f"this host boots with systemd-boot ({facts.bootloader_evidence}) but {KERNEL_CMDLINE} is missing or empty; "
                                    "creating it without the root= parameters would leave the host unbootable. Restore it (see `proxmox-boot-tool`) and re-run."))
        elif not refusals:
            try:
                new_cmdline_file = edit_kernel_cmdline(current_cmdline_file, tokens)
            except PlanError as error:
                refusals.append(Refusal(None, f"{error}; add {' '.join(tokens)} by hand"))
    elif facts.files.get(GRUB_DEFAULT) is None:
        refusals.append(Refusal(None, f"this host boots with GRUB ({facts.bootloader_evidence}) but {GRUB_DEFAULT} is missing; restore it and re-run."))
    elif not refusals:
        try:
            path, new_cmdline_file = edit_grub_files(facts.files, tokens)
            current_cmdline_file = facts.files.get(path)
        except PlanError as error:
            refusals.append(Refusal(None, f"{error}. update-grub reads {GRUB_DEFAULT}, then {GRUB_D}/*.cfg in order (the last setting wins); "
                                    "nothing was written"))

    functions = [fn for gpu in inputs.gpus for fn in facts.slot_functions(gpu.address)]
    files: list[FileChange] = []
    noops: list[str] = []

    def want(file_path: str, content: str | None, reason: str, ok: str) -> None:
        current = facts.files.get(file_path)
        if current == content:
            noops.append(f"{file_path} {ok}")
            return
        edits = hand_edits(file_path, facts)
        if edits and inputs.hand_edits == "refuse":
            refusals.append(_hand_edit_refusal(file_path, edits, "rewriting it"))
        elif edits:
            reason += f"; replaces the hand edits ({'; '.join(shown(e, 100) for e in edits)}) as host.handEdits is overwrite"
        elif current is None and file_path in facts.written:
            reason += " (it was deleted since proxmox-talos-gpu wrote it)"
        files.append(FileChange(file_path, current, content, reason))

    if not refusals:
        want(BLACKLIST_FILE, blacklist_content(), f"keep {', '.join(BLACKLISTED)} off the GPU so vfio-pci can claim it",
             "already blacklists the host GPU drivers")
        virqfd = "vfio_virqfd is part of vfio from kernel 6.2" if facts.kernel_version >= (6, 2) else "kernel older than 6.2 also needs vfio_virqfd"
        want(MODULES_LOAD_FILE, modules_load_content(facts.kernel_version), f"load the VFIO modules at boot ({virqfd}; running {facts.kernel_release})",
             "already loads the VFIO modules")
        blocks = dict(vfio_blocks)
        blocks[owner] = Block(tuple((fn.address, fn.vendor_device, fn.class_code) for fn in functions))
        ids = ",".join(sorted({fn.vendor_device for fn in functions}))
        want(VFIO_FILE, render_vfio_file(blocks), f"bind {ids} to vfio-pci (every function of {', '.join(g.address for g in inputs.gpus)})",
             f"already binds {ids} to vfio-pci")
    if refusals:
        return HostPlan(owner=owner, refusals=tuple(refusals), notes=tuple(notes))

    if new_cmdline_file is not None and new_cmdline_file != current_cmdline_file:
        value = _cmdline_of(path, current_cmdline_file) or ""  # type: ignore[arg-type]  # never None: the edit above read it
        added = [t for t in tokens if t not in value.split()]
        where = "" if path in (GRUB_DEFAULT, KERNEL_CMDLINE) else f" (this file decides GRUB_CMDLINE_LINUX_DEFAULT: update-grub reads it after {GRUB_DEFAULT})"
        files.append(FileChange(path, current_cmdline_file, new_cmdline_file,
                                f"kernel command line ({facts.bootloader}){where}: add {' '.join(added)}; " + "; ".join(token_reasons)))
    elif tokens:
        noops.append(f"{path} already has {' '.join(tokens)}")
    else:
        noops.append(f"{path}: no kernel parameter needed ({facts.cpu_vendor} CPU, kernel {facts.kernel_release}, iommu=pt not asked)")
    if facts.cpu_vendor == "amd" and inputs.intel_iommu == "on":
        notes.append("host.intelIommu is on but the CPU is AMD: intel_iommu is never added on AMD")

    commands = _commands(files, facts)
    if not commands:
        noops.append("no initramfs or bootloader refresh: none of their inputs changed")
    live = plan_live_binding([facts.slot_functions(gpu.address) for gpu in inputs.gpus], facts, tokens)
    reboot_reasons = list(live.reboot_reasons)
    notes.extend(live.notes)
    if not reboot_reasons and not live.rebinds:
        noops.append("no reboot and no rebind: the IOMMU is on and every function is bound to vfio-pci")
    modules_file = facts.files.get(ETC_MODULES) or ""
    if facts.kernel_version >= (6, 2) and re.search(r"^\s*vfio_virqfd\b", modules_file, re.M):
        notes.append(f"{ETC_MODULES} lists vfio_virqfd, which kernel {facts.kernel_release} no longer has ('Failed to find module'); you may remove that line")
    return HostPlan(
        owner=owner, files=tuple(files), commands=tuple(commands), reboot=bool(reboot_reasons),
        reboot_reason="; ".join(reboot_reasons), noops=tuple(noops), notes=tuple(notes), cleanup=facts.stale_temps,
        records=tuple((c.path, c.after) for c in files),
        wanted_cmdline=tuple(tokens), functions=tuple(fn.address for fn in functions),
        check_isolation_after_boot=defer_isolation, allow_reboot=inputs.allow_reboot,
        impact=reboot_impact(inputs, facts) if reboot_reasons else None, running_guests=inputs.running_guests, rebinds=live.rebinds,
    )


def _commands(files: list[FileChange], facts: HostFacts) -> list[Command]:
    changed = {change.path for change in files}
    commands = []
    initramfs_inputs = changed & {BLACKLIST_FILE, VFIO_FILE, MODULES_LOAD_FILE}
    if initramfs_inputs or "update-initramfs" in facts.pending:
        why = f"{', '.join(sorted(initramfs_inputs))} changed" if initramfs_inputs else "an interrupted run left it pending"
        commands.append(Command("update-initramfs", f"the initramfs loads vfio-pci early; {why}"))
    refresh = "update-grub" if facts.bootloader.startswith("grub") and not facts.boot_tool_managed else "proxmox-boot-tool-refresh"
    reasons = []
    cmdline_changed = sorted(path for path in changed if is_cmdline_file(path))
    if cmdline_changed:
        reasons.append(f"{', '.join(cmdline_changed)} changed")
    if initramfs_inputs and facts.boot_tool_managed:
        reasons.append("proxmox-boot-tool copies the new initramfs to the ESP(s)")
    if any(name in facts.pending for name in ("update-grub", "proxmox-boot-tool-refresh")):
        reasons.append("an interrupted run left it pending")
    if reasons:
        commands.append(Command(refresh, f"{facts.bootloader} boot configuration: " + "; ".join(reasons)))
    return commands


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


def verify_host(inputs: HostPrepInputs, facts: HostFacts, owner: str, *, booted: bool = False) -> VerifyReport:
    """Running-state checks: IOMMU on, groups isolated, every function on
    vfio-pci, nothing left to write. The planned kernel parameters must be on
    /proc/cmdline after a reboot (``booted``); without one they wait in the
    boot configuration for the next boot."""
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
    if missing and (booted or not facts.iommu_active):
        problems.append(f"/proc/cmdline lacks {' '.join(missing)} (running: {facts.cmdline})")
    elif missing:
        checks.append(f"{' '.join(missing)}: in the boot configuration, applies at the next boot")
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


@dataclass(frozen=True)
class Restore:
    content: str
    reason: str
    exact: bool  # the original, byte for byte
    notes: tuple[str, ...] = ()


def restore_cmdline(path: str, current: str, original: str, written: str | None = None) -> Restore:
    """What undo writes to a kernel command-line file. When it is still what
    this program wrote (or, without that record, what its edit of the
    original gives), the original comes back byte for byte; otherwise only
    the parameters this program added are taken out, and everything changed
    by hand since stays."""
    if written is not None and current == written:
        return Restore(original, "restore the original, byte for byte", True)
    kept = f"the original is kept at {KEPT_DIR}{path}"
    try:
        value = _cmdline_of(path, current)
        original_value = _cmdline_of(path, original) or ""
    except PlanError as error:
        return Restore(current, "", False, (f"{path} cannot be read any more ({error}): left as it is; {kept}",))
    if written is None and value is not None:
        candidates = [t for t in value.split() if _key(t) in _MANAGED_KEYS]
        try:
            if _edit(path, original, candidates) == current:
                return Restore(original, "restore the original, byte for byte", True)
        except PlanError:
            pass
    if value is None:
        return Restore(current, "", False, (f"{path} no longer sets GRUB_CMDLINE_LINUX_DEFAULT (removed by hand since proxmox-talos-gpu "
                                            f"edited it): nothing of this program's is left to take back, so the file stays as it is; {kept}",))
    original_tokens = original_value.split()
    try:
        ours_then = (_cmdline_of(path, written) or "").split() if written is not None else list(_OUR_TOKENS)
    except PlanError:
        ours_then = list(_OUR_TOKENS)
    ours = {t for t in ours_then if t not in original_tokens and _key(t) in _MANAGED_KEYS}
    tokens = value.split()
    removed = [t for t in tokens if t in ours]
    restored = [t for t in tokens if t not in ours]
    for token in removed:
        before = [t for t in original_tokens if _key(t) == _key(token)]
        if before and not any(_key(t) == _key(token) for t in restored):
            restored.extend(before)
    notes = [f"{path}: kept {t}: changed by hand since proxmox-talos-gpu set {_key(t)}"
             for t in tokens if _key(t) in _MANAGED_KEYS and t not in ours and t not in original_tokens]
    notes.append(f"{path} changed by hand since proxmox-talos-gpu edited it, so it is not restored byte for byte; {kept}")
    if not removed:
        return Restore(current, "", False, tuple(notes))
    return Restore(_set_cmdline(path, current, " ".join(restored)), "the file changed by hand since proxmox-talos-gpu edited it: "
                   f"take out only the parameters it added ({' '.join(removed)})", False, tuple(notes))


def plan_undo(facts: HostFacts, owner: str, *, allow_reboot: bool = True, reboot_on_destroy: bool = False,
              hand_edits_policy: str = "refuse", inputs: HostPrepInputs | None = None) -> HostPlan:
    """Remove ``owner``'s block; the last stack out restores every original."""
    if not _OWNER.match(owner):
        raise PlanError(f"owner {owner!r} must be letters, digits, '.', '_', '-' and '/' (project/stack)")
    blocks = parse_blocks(facts.files.get(VFIO_FILE))
    ours = blocks.pop(owner, None)
    files: list[FileChange] = []
    noops: list[str] = []
    notes: list[str] = []
    forget: list[str] = []
    archive: list[str] = []
    refusals: list[Refusal] = []
    owned_present = {p for p in OWNED_FILES if facts.files.get(p) is not None}

    def rewrite(path: str, after: str | None, reason: str, action: str) -> None:
        edits = hand_edits(path, facts)
        if edits and hand_edits_policy == "refuse":
            refusals.append(_hand_edit_refusal(path, edits, action))
            return
        if edits:
            reason += f"; drops the hand edits ({'; '.join(shown(e, 100) for e in edits)}) as host.handEdits is overwrite"
        files.append(FileChange(path, facts.files.get(path), after, reason))

    if blocks:
        if ours is None:
            noops.append(f"nothing to undo because {VFIO_FILE} has no block for {owner} (other stacks: {', '.join(sorted(blocks))})")
        else:
            rewrite(VFIO_FILE, render_vfio_file(blocks), f"remove the block of {owner}; {len(blocks)} other stack(s) keep theirs", "removing this block")
            noops.append(f"the kernel command line, blacklist and module list stay: stack(s) {', '.join(sorted(blocks))} still pass GPUs through")
            shared = sorted({vd for _, vd, _ in ours.functions} & {vd for b in blocks.values() for _, vd, _ in b.functions})
            if shared:
                notes.append(f"{', '.join(shared)} stay bound to vfio-pci: another stack passes through the same model")
    elif ours is None and not facts.originals and not owned_present:
        noops.append(f"nothing to undo because proxmox-talos-gpu left nothing on this host for {owner}")
    else:
        for path in sorted(set(facts.originals) | owned_present):
            current = facts.files.get(path)
            if path not in facts.originals:
                # Forgotten, not saved: the write batch would otherwise keep the file as its "original",
                # and the next undo would put it back.
                forget.append(path)
                rewrite(path, None, "a proxmox-talos-gpu file without a recorded original: remove it", "removing it")
                continue
            # A file named after this program is its own even when an earlier copy was saved as its
            # original (the state folder was lost since): undo removes it rather than putting that back.
            original = None if path in OWNED_FILES else facts.originals[path]
            if current == original:
                forget.append(path)
                noops.append(f"{path} is already as it was before proxmox-talos-gpu")
                continue
            if original is None:
                forget.append(path)
                rewrite(path, None, "created by proxmox-talos-gpu: remove it", "removing it")
            elif current is not None and is_cmdline_file(path):
                restore = restore_cmdline(path, current, original, written_record(path, facts))
                notes.extend(restore.notes)
                (forget if restore.exact else archive).append(path)
                if restore.content != current:
                    files.append(FileChange(path, current, restore.content, restore.reason))
            else:  # a command-line file deleted since
                forget.append(path)
                files.append(FileChange(path, current, original, "restore the original, byte for byte"))
    if refusals:
        return HostPlan(owner=owner, refusals=tuple(refusals), notes=tuple(notes))
    commands = _commands(files, facts)
    changed = bool(files)
    mine = {address for address, _, _ in ours.functions} if ours is not None else None
    back = plan_unbinding(facts, mine) if ours is not None or not blocks else plan_unbinding(facts, set())
    notes.extend(back.notes)
    given = {r.address for r in back.rebinds if not r.forget}
    left = None if mine is None else [a for a in sorted(mine) if a not in given and (d := facts.devices.get(a)) and d.driver == "vfio-pci"]
    reboot = changed and reboot_on_destroy and allow_reboot and left != []
    if changed and not reboot and left != []:
        notes.append("the running host keeps the GPU on vfio-pci until its next reboot" + ("" if reboot_on_destroy else " (host.rebootOnDestroy is false)"))
    if given:
        notes.append(f"{', '.join(sorted(given))} go back to their host drivers now (no reboot needed)")
    records = [(c.path, c.after if c.path == VFIO_FILE and c.after is not None else None) for c in files]
    records += [(path, None) for path in (*forget, *archive)
                if (path in facts.written or path + ".prev" in facts.written) and path not in {c.path for c in files}]
    policy_inputs = inputs or HostPrepInputs(gpus=())
    return HostPlan(owner=owner, files=tuple(files), commands=tuple(commands), reboot=reboot,
                    reboot_reason="host.rebootOnDestroy is true" if reboot else "", noops=tuple(noops), notes=tuple(notes),
                    cleanup=facts.stale_temps, forget_originals=tuple(forget), archive_originals=tuple(archive), records=tuple(records),
                    impact=reboot_impact(policy_inputs, facts) if reboot else None,
                    running_guests=policy_inputs.running_guests, rebinds=back.rebinds)
