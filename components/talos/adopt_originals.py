"""What the node had at the paths this program owns before the first change
(:class:`Originals`), recorded once so that destroy puts it back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from components.talos.config_documents import get_path
from components.talos.cri_customization import cri_entry
from components.talos.machine_config import BPF_JIT_HARDEN, NVIDIA_MODULES, OwnedValues

# Containers this program may have to create (and so remove again).
CONTAINERS = ("install", "kernel", "kernel.modules", "sysctls", "nodeLabels", "files")


@dataclass
class Originals:
    """JSON-able record of the owned paths' values before adoption. A key
    missing from a mapping means "not recorded yet"; ``None`` means the
    path was absent."""

    install: dict[str, Any] = field(default_factory=dict)        # "image"/"wipe" -> value or None
    modules: list[str] | None = None                               # NVIDIA modules the node listed itself
    sysctls: dict[str, Any] = field(default_factory=dict)
    node_labels: dict[str, Any] = field(default_factory=dict)
    cri_file: dict[str, Any] | None = None                         # {"entry": the node's file entry or None}
    absent: list[str] | None = None                                # containers the node did not have

    def to_dict(self) -> dict[str, Any]:
        return {"install": dict(self.install), "modules": self.modules, "sysctls": dict(self.sysctls),
                "nodeLabels": dict(self.node_labels), "criFile": self.cri_file, "absent": self.absent}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Originals:
        data = data or {}
        return cls(install=dict(data.get("install") or {}), modules=data.get("modules"), sysctls=dict(data.get("sysctls") or {}),
                   node_labels=dict(data.get("nodeLabels") or {}), cri_file=data.get("criFile"), absent=data.get("absent"))

    def record(self, machine: Mapping[str, Any], owned: OwnedValues) -> None:
        """Record, for every owned path not yet recorded, what ``machine``
        (the node's config before this change) holds there."""
        if self.absent is None:
            self.absent = [path for path in CONTAINERS if get_path(machine, path) is None]
        install = machine.get("install") or {}
        for key in ("image", "wipe"):
            self.install.setdefault(key, install.get(key))
        if self.modules is None:
            self.modules = [name for name in module_names(machine) if name in NVIDIA_MODULES]
        sysctls = machine.get("sysctls") or {}
        self.sysctls.setdefault(BPF_JIT_HARDEN, sysctls.get(BPF_JIT_HARDEN))
        labels = machine.get("nodeLabels") or {}
        for key in owned.node_labels:
            self.node_labels.setdefault(key, labels.get(key))
        if self.cri_file is None:
            self.cri_file = {"entry": cri_entry(machine)}


def module_names(machine: Mapping[str, Any]) -> list[str]:
    modules = ((machine.get("kernel") or {}).get("modules")) or []
    return [str(item.get("name")) for item in modules if isinstance(item, Mapping)]
