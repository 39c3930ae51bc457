"""Files this program wrote, edited by hand since: what changed, and the
refusal that keeps a run from dropping it."""

from __future__ import annotations

import re
from collections import Counter

from components.hostprep.facts import BLACKLIST_FILE, MODULES_LOAD_FILE, VFIO_FILE, HostFacts, shown
from components.hostprep.module_files import blacklist_content, modules_load_content
from components.hostprep.plan_model import Refusal
from components.hostprep.vfio_file import FUNCTION_LINE, SOFTDEP_BY_CLASS, VFIO_HEADER


def written_by_us(path: str, line: str) -> bool:
    """Could this program have written ``line`` to ``path`` (any version)?
    For hosts prepared before it kept a record of what it wrote."""
    if path == BLACKLIST_FILE:
        return line in blacklist_content().splitlines()
    if path == MODULES_LOAD_FILE:
        return line in modules_load_content((6, 1)).splitlines()  # the newest kernel still given vfio_virqfd: the longest list
    if path == VFIO_FILE:
        return (line in VFIO_HEADER or bool(re.fullmatch(r"# (BEGIN|END) \S+", line)) or bool(FUNCTION_LINE.match(line))
                or bool(re.fullmatch(r"options vfio-pci ids=[0-9a-f]{4}:[0-9a-f]{4}(,[0-9a-f]{4}:[0-9a-f]{4})*", line))
                or line in {f"softdep {m} pre: vfio-pci" for m in SOFTDEP_BY_CLASS.values()})
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
        return [f"+{line}" for line in current.splitlines() if line.strip() and not written_by_us(path, line)]
    if current == record:
        return []
    now, then = (Counter(line for line in text.splitlines() if line.strip()) for text in (current, record))
    changes = [f"+{line}" for line in (now - then).elements()] + [f"-{line}" for line in (then - now).elements()]
    return changes or ["(only blank lines or line endings changed)"]


def hand_edit_refusal(path: str, edits: list[str], action: str) -> Refusal:
    lines = "; ".join(f"`{shown(e, 100)}`" for e in edits[:8]) + (f" and {len(edits) - 8} more" if len(edits) > 8 else "")
    return Refusal(None, (
        f"{path} was edited by hand since proxmox-talos-gpu wrote it ({lines}); {action} would drop that. "
        "Move your lines to a file of your own in the same folder and re-run, or let this run replace them: "
        "set host.handEdits: overwrite (CLI: --hand-edits overwrite). Nothing was written."))
