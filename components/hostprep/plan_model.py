"""What a host plan holds: file changes, commands, refusals, the reboot
and what it stops; rendered for people (``render``) and as JSON."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from components.hostprep import ha
from components.hostprep.binding import Rebind
from components.hostprep.facts import Guest
from components.hostprep.inputs import PROJECT_KEY

COMMANDS: dict[str, tuple[str, ...]] = {
    "update-initramfs": ("update-initramfs", "-u", "-k", "all"),
    "update-grub": ("update-grub",),
    "proxmox-boot-tool-refresh": ("proxmox-boot-tool", "refresh"),
}


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
