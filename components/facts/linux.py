"""What the Linux kernel reports: ``/proc/modules`` (read on the Talos node
with talosctl)."""

from __future__ import annotations

from dataclasses import dataclass

from components.facts.parsing import ParseError


@dataclass(frozen=True)
class KernelModule:
    name: str
    size: int
    refcount: int
    state: str


def parse_proc_modules(text: str) -> dict[str, KernelModule]:
    """``/proc/modules``: ``name size refcount deps state address [taint]``."""
    modules: dict[str, KernelModule] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) < 6 or not fields[1].isdigit() or not fields[2].lstrip("-").isdigit():
            raise ParseError(f"/proc/modules line {number} is not 'name size refcount deps state address': {line[:80]!r}")
        modules[fields[0]] = KernelModule(fields[0], int(fields[1]), int(fields[2]), fields[4])
    return modules
