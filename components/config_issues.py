"""A problem of the stack config, and the error that carries them.

The lowest layer of the config room, outside the components/config package
so that the tables below the package (components/gpu_capabilities.py,
components/talos/versions.py) and the CLIs that only name the namespace
import it without loading the schema: every rule reports a
:class:`ConfigIssue` naming the key, the value and what is allowed. No
Pulumi SDK here: the offline tools read and check a stack file without it.
Under the engine a ConfigError is also a ``pulumi.RunError`` (set by
components/config/engine.py, which the program imports), so `pulumi up`
prints its message without a traceback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PROJECT = "proxmox-talos-gpu"

MISSING = object()  # a required key that is not set
NOT_SHOWN = object()  # a stray key's value: it may be a secret written in the wrong place


@dataclass(frozen=True)
class ConfigIssue:
    key: str  # path under the namespace, e.g. "gpus[0].address"; "" for a problem of the file itself
    value: Any
    allowed: str
    line: int | None = None  # where in the stack file, when read from one
    namespaced: bool = True  # False: ``key`` is shown as written (a stray key of the file)

    def __str__(self) -> str:
        if not self.key:
            return (f"line {self.line}: " if self.line else "") + self.allowed
        name = f"{PROJECT}:{self.key}" if self.namespaced else self.key
        shown = "" if self.value is NOT_SHOWN else " = (missing)" if self.value is MISSING else f" = {self.value!r}"
        where = f" (line {self.line})" if self.line else ""
        return f"{name}{shown}: {self.allowed}{where}"


class ProgramError(Exception):
    """The base of ConfigError while the Pulumi SDK is not loaded; its own
    class so that components/config/engine.py can put ``pulumi.RunError`` in
    its place (Python swaps a base only between classes of the same layout)."""


class ConfigError(ProgramError):
    """Raised before any resource is registered. Under the engine a RunError,
    which prints no traceback. ``source`` names the stack file the issues were
    found in, when there is one."""

    def __init__(self, issues: list[ConfigIssue], source: str | None = None):
        self.issues = issues
        self.source = source
        lines = "\n".join(f"  - {issue}" for issue in issues)
        where = f" in {source}" if source else ""
        super().__init__(f"invalid stack configuration{where} ({len(issues)} problem(s)):\n{lines}")
