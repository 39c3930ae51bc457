"""The host planner: (inputs from config, host facts, owner) -> HostPlan.

Pure: no SSH, no clock, no filesystem. Every file change and command carries
its reason; everything left alone says why ("nothing to do because ...").
A refusal plan holds no changes at all, so refusing writes nothing.
"""

from __future__ import annotations

import re

from components.hostprep import ha
from components.hostprep.binding import plan_live_binding
from components.hostprep.cmdline import cmdline_of, edit_grub_files, edit_kernel_cmdline, is_cmdline_file
from components.hostprep.facts import (
    BLACKLIST_FILE,
    ETC_MODULES,
    GRUB_D,
    GRUB_DEFAULT,
    KERNEL_CMDLINE,
    MODULES_LOAD_FILE,
    VFIO_FILE,
    HostFacts,
    shown,
)
from components.hostprep.hand_edits import hand_edit_refusal, hand_edits
from components.hostprep.inputs import HAND_EDITS, RUNNING_GUESTS, HostPrepInputs, PlanError
from components.hostprep.module_files import BLACKLISTED, blacklist_content, modules_load_content
from components.hostprep.plan_model import Command, FileChange, HostPlan, RebootImpact, Refusal
from components.hostprep.refusals import plan_refusals
from components.hostprep.vfio_file import Block, parse_blocks, render_vfio_file

_OWNER = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def check_owner(owner: str) -> None:
    if not _OWNER.match(owner):
        raise PlanError(f"owner {owner!r} must be letters, digits, '.', '_', '-' and '/' (project/stack)")


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
    check_owner(owner)
    if inputs.running_guests not in RUNNING_GUESTS or inputs.hand_edits not in HAND_EDITS:
        raise PlanError(f"running_guests must be one of {RUNNING_GUESTS} and hand_edits one of {HAND_EDITS}")
    vfio_blocks = parse_blocks(facts.files.get(VFIO_FILE))
    refusals, notes, defer_isolation = plan_refusals(inputs, facts, owner, vfio_blocks)
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
            refusals.append(hand_edit_refusal(file_path, edits, "rewriting it"))
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
        value = cmdline_of(path, current_cmdline_file) or ""  # type: ignore[arg-type]  # never None: the edit above read it
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

    commands = refresh_commands(files, facts)
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


def refresh_commands(files: list[FileChange], facts: HostFacts) -> list[Command]:
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
