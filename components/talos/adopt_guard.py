"""The guard of an adoption: the merged config may differ from the node's
only at the paths this program owns; anything else is refused, by path."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from components.talos.adopt_originals import CONTAINERS
from components.talos.config_documents import AdoptError, get_path, v1alpha1_index
from components.talos.cri_customization import strip_block
from components.talos.machine_config import BPF_JIT_HARDEN, CRI_CUSTOMIZATION_PATH, NVIDIA_MODULES


def _without_owned(documents: list[dict[str, Any]], label_keys: Iterable[str]) -> list[Any]:
    out = copy.deepcopy(documents)
    machine = out[v1alpha1_index(out)].get("machine")
    if not isinstance(machine, dict):
        return out
    install = machine.get("install")
    if isinstance(install, dict):
        install.pop("image", None)
        install.pop("wipe", None)
    kernel = machine.get("kernel")
    if isinstance(kernel, dict) and isinstance(kernel.get("modules"), list):
        kernel["modules"] = [item for item in kernel["modules"]
                             if not (isinstance(item, Mapping) and dict(item) == {"name": item.get("name")} and item.get("name") in NVIDIA_MODULES)]
    if isinstance(machine.get("sysctls"), dict):
        machine["sysctls"].pop(BPF_JIT_HARDEN, None)
    if isinstance(machine.get("nodeLabels"), dict):
        for key in label_keys:
            machine["nodeLabels"].pop(key, None)
    if isinstance(machine.get("files"), list):
        kept = []
        for entry in machine["files"]:
            if isinstance(entry, dict) and entry.get("path") == CRI_CUSTOMIZATION_PATH and isinstance(entry.get("content"), str):
                # with_block ends a last line that had no line break.
                entry = {**entry, "content": strip_block(entry["content"]).rstrip("\n")}
                if entry["content"] == "":
                    continue  # a file holding only this program's lines is owned whole
            kept.append(entry)
        machine["files"] = kept
    for path in reversed(CONTAINERS):  # kernel.modules before kernel: a kernel left empty goes too
        parent_path, _, key = path.rpartition(".")
        parent = get_path(machine, parent_path) if parent_path else machine
        if isinstance(parent, dict) and parent.get(key) in ({}, []):
            del parent[key]
    return out


def leaf_differences(before: Any, after: Any, path: str = "") -> list[str]:
    """Paths of the leaves that differ between two YAML trees."""
    if isinstance(before, dict) and isinstance(after, dict):
        found: list[str] = []
        for key in list(before) + [key for key in after if key not in before]:
            child = f"{path}.{key}" if path else str(key)
            if key not in before or key not in after:
                found.append(child)
            else:
                found += leaf_differences(before[key], after[key], child)
        return found
    if isinstance(before, list) and isinstance(after, list):
        if len(before) != len(after):
            return [f"{path}[] ({len(before)} -> {len(after)} items)"]
        found = []
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            found += leaf_differences(old, new, f"{path}[{index}]")
        return found
    return [] if before == after and type(before) is type(after) else [path or "(document)"]


def guard(before: list[dict[str, Any]], after: list[dict[str, Any]], label_keys: Iterable[str]) -> None:
    """Refuse, naming the paths, when ``after`` differs from ``before``
    anywhere outside the owned paths."""
    keys = list(label_keys)
    if len(before) != len(after):
        raise AdoptError(f"refusing: the merged config has {len(after)} documents, the node's has {len(before)}")
    foreign: list[str] = []
    for index, (old, new) in enumerate(zip(_without_owned(before, keys), _without_owned(after, keys), strict=True)):
        foreign += [f"document {index}: {leaf}" for leaf in leaf_differences(old, new)]
    if foreign:
        raise AdoptError("refusing: the merged config would change paths this program does not own: " + "; ".join(foreign[:20]))
