"""Undo (pure): remove this stack's block; the last stack out restores
every original, byte for byte where the file is still as written."""

from __future__ import annotations

from dataclasses import dataclass

from components.hostprep.binding import plan_unbinding
from components.hostprep.cmdline import MANAGED_KEYS, OUR_TOKENS, cmdline_of, is_cmdline_file, planned_edit, set_cmdline, token_key
from components.hostprep.facts import OWNED_FILES, STATE_DIR, VFIO_FILE, HostFacts, shown
from components.hostprep.hand_edits import hand_edit_refusal, hand_edits, written_record
from components.hostprep.inputs import HostPrepInputs, PlanError
from components.hostprep.plan import check_owner, reboot_impact, refresh_commands
from components.hostprep.plan_model import FileChange, HostPlan, Refusal
from components.hostprep.vfio_file import parse_blocks, render_vfio_file

KEPT_DIR = f"{STATE_DIR}/kept"  # originals set aside when a file changed by hand since it was edited


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
        value = cmdline_of(path, current)
        original_value = cmdline_of(path, original) or ""
    except PlanError as error:
        return Restore(current, "", False, (f"{path} cannot be read any more ({error}): left as it is; {kept}",))
    if written is None and value is not None:
        candidates = [t for t in value.split() if token_key(t) in MANAGED_KEYS]
        try:
            if planned_edit(path, original, candidates) == current:
                return Restore(original, "restore the original, byte for byte", True)
        except PlanError:
            pass
    if value is None:
        return Restore(current, "", False, (f"{path} no longer sets GRUB_CMDLINE_LINUX_DEFAULT (removed by hand since proxmox-talos-gpu "
                                            f"edited it): nothing of this program's is left to take back, so the file stays as it is; {kept}",))
    original_tokens = original_value.split()
    try:
        ours_then = (cmdline_of(path, written) or "").split() if written is not None else list(OUR_TOKENS)
    except PlanError:
        ours_then = list(OUR_TOKENS)
    ours = {t for t in ours_then if t not in original_tokens and token_key(t) in MANAGED_KEYS}
    tokens = value.split()
    removed = [t for t in tokens if t in ours]
    restored = [t for t in tokens if t not in ours]
    for token in removed:
        before = [t for t in original_tokens if token_key(t) == token_key(token)]
        if before and not any(token_key(t) == token_key(token) for t in restored):
            restored.extend(before)
    notes = [f"{path}: kept {t}: changed by hand since proxmox-talos-gpu set {token_key(t)}"
             for t in tokens if token_key(t) in MANAGED_KEYS and t not in ours and t not in original_tokens]
    notes.append(f"{path} changed by hand since proxmox-talos-gpu edited it, so it is not restored byte for byte; {kept}")
    if not removed:
        return Restore(current, "", False, tuple(notes))
    return Restore(set_cmdline(path, current, " ".join(restored)), "the file changed by hand since proxmox-talos-gpu edited it: "
                   f"take out only the parameters it added ({' '.join(removed)})", False, tuple(notes))


def plan_undo(facts: HostFacts, owner: str, *, allow_reboot: bool = True, reboot_on_destroy: bool = False,
              hand_edits_policy: str = "refuse", inputs: HostPrepInputs | None = None) -> HostPlan:
    """Remove ``owner``'s block; the last stack out restores every original."""
    check_owner(owner)
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
            refusals.append(hand_edit_refusal(path, edits, action))
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
    commands = refresh_commands(files, facts)
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
