"""Adopt a node's running machine config (pure): merge in only the paths this
program owns, keep everything else, and undo it on destroy.

``talosctl apply-config`` replaces the node's whole machine config (Talos
docs, editing-machine-configuration; pulumiverse-talos ConfigurationApply
does the same), so applying a generated worker config would drop the node's
network, kubelet, sysctls, files and modules. This module does by code what
a careful operator does with ``talosctl patch machineconfig``:

- owned: ``machine.install.image``, ``machine.install.wipe: false``, the
  NVIDIA kernel modules (appended after the node's own, never twice), the
  sysctl ``net.core.bpf_jit_harden``, the configured ``machine.nodeLabels``
  keys, and this program's marked lines in
  ``/etc/cri/conf.d/20-customization.part`` (containerd merges only that one
  file, Talos docs "Containerd", so the lines go into the node's own file);
- every other value of the v1alpha1 document, and every other document of
  a multi-document config, comes out as it went in. :func:`guard` checks it
  and refuses a merge that would change anything else;
- the values replaced are recorded (``Originals``) the first time, so that
  :func:`restore` puts them back.

The pieces live beside this module: the documents (config_documents), the
originals (adopt_originals), the CRI file's lines (cri_customization), the
guard (adopt_guard), which changes reboot (config_reboots) and the masked diff
(config_diff).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.talos.adopt_changes import ABSENT, Change, drop_empty, put_back, set_value
from components.talos.adopt_guard import guard
from components.talos.adopt_originals import Originals, module_names
from components.talos.config_diff import diff_lines
from components.talos.config_documents import AdoptError, dump_documents, load_documents, v1alpha1_index
from components.talos.config_reboots import reboot_paths
from components.talos.cri_customization import BLOCK, CRI_FILE, INNER_BLOCK, cri_position, strip_block, with_block
from components.talos.machine_config import BPF_JIT_HARDEN, CRI_CUSTOMIZATION_PATH, NVIDIA_MODULES, OwnedValues
from components.talos.module_documents import document_modules

# --------------------------------------------------------------------------
# The merge
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Merged:
    documents: list[dict[str, Any]]
    changes: list[Change]
    originals: Originals

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def text(self) -> str:
        return dump_documents(self.documents)


def merge(documents: list[dict[str, Any]], owned: OwnedValues, originals: Originals | None = None) -> Merged:
    """``documents`` with ``owned`` merged in. ``originals`` (from an earlier
    adoption) says what to put back where a path is no longer wanted at this
    version (e.g. the sysctl on Talos 1.13); new owned paths are recorded."""
    out = copy.deepcopy(documents)
    index = v1alpha1_index(out)
    machine = out[index].setdefault("machine", {})
    if not isinstance(machine, dict):
        raise AdoptError("machine in the v1alpha1 document is not a mapping")
    record = copy.deepcopy(originals) if originals is not None else Originals()
    record.record(machine, owned)
    changes: list[Change] = []

    install = machine.setdefault("install", {})
    set_value(install, "image", owned.image, "machine.install.image", changes)
    # Never wipe: the node's disks may hold Ceph OSDs.
    set_value(install, "wipe", False, "machine.install.wipe", changes)

    # A module a KernelModuleConfig document loads is not listed again.
    present = set(module_names(machine)) | set(document_modules(out))
    missing = [name for name in owned.modules if name not in present]
    modules = machine.setdefault("kernel", {}).setdefault("modules", []) if missing else []
    for name in missing:
        if name not in present:
            modules.append({"name": name})
            changes.append(Change(f"machine.kernel.modules[name={name}]", ABSENT, {"name": name}))

    sysctls = machine.setdefault("sysctls", {})
    if BPF_JIT_HARDEN in owned.sysctls:
        set_value(sysctls, BPF_JIT_HARDEN, owned.sysctls[BPF_JIT_HARDEN], f"machine.sysctls[{BPF_JIT_HARDEN}]", changes)
    else:
        put_back(sysctls, BPF_JIT_HARDEN, record.sysctls.get(BPF_JIT_HARDEN), f"machine.sysctls[{BPF_JIT_HARDEN}]", changes)

    labels = machine.setdefault("nodeLabels", {})
    for key, value in owned.node_labels.items():
        set_value(labels, key, value, f"machine.nodeLabels[{key}]", changes)
    for key in [key for key in record.node_labels if key not in owned.node_labels]:
        # A label this program set earlier and no longer wants.
        put_back(labels, key, record.node_labels.pop(key), f"machine.nodeLabels[{key}]", changes)

    _merge_cri_file(machine, owned, record, changes)
    drop_empty(machine, record.absent or [])
    return Merged(out, changes, record)


def _merge_cri_file(machine: dict[str, Any], owned: OwnedValues, record: Originals, changes: list[Change]) -> None:
    files = machine.setdefault("files", [])
    position = cri_position(files)
    if owned.default_runtime:
        if position is None:
            entry = {"content": with_block("", owned.version), "permissions": 0o644, "path": CRI_CUSTOMIZATION_PATH, "op": "create"}
            files.append(entry)
            changes.append(Change(CRI_FILE, ABSENT, entry["content"]))
            return
        entry = files[position]
        before = str(entry.get("content") or "")
        after = with_block(before, owned.version)
        if after != before:
            entry["content"] = after
            changes.append(Change(f"{CRI_FILE}.content", before, after))
        return
    if position is not None:
        take_out_block(files, position, (record.cri_file or {}).get("entry"), changes)


def take_out_block(files: list[Any], position: int, original: Mapping[str, Any] | None, changes: list[Change]) -> None:
    """Take this program's lines out of the CRI file entry at ``position``
    (merge when the default runtime is no longer wanted, and restore): the
    whole entry goes when the node had none (``original``) and nothing else
    is left in it; otherwise its content loses the marked lines."""
    entry = files[position]
    content = str(entry.get("content") or "")
    if original is None and strip_block(content) == "":
        del files[position]
        changes.append(Change(CRI_FILE, content, ABSENT))
    elif strip_block(content) != content:
        after = _without_block(content, original)
        files[position] = {**entry, "content": after}
        changes.append(Change(f"{CRI_FILE}.content", content, after))


def _without_block(content: str, original: Mapping[str, Any] | None) -> str:
    """``content`` without this program's lines: the original bytes where
    only a final line break was added to them."""
    stripped = strip_block(content)
    before = (original or {}).get("content")
    return before if isinstance(before, str) and stripped.rstrip("\n") == before.rstrip("\n") else stripped


@dataclass(frozen=True)
class Restored:
    documents: list[dict[str, Any]]
    changes: list[Change]
    conflicts: list[str]

    def text(self) -> str:
        return dump_documents(self.documents)


_FACTORY_IMAGE = re.compile(r"^factory\.talos\.dev/(?:[a-z0-9-]+-)?installer/(?P<id>[0-9a-f]{64}):v\d+\.\d+\.\d+$")


def restore(documents: list[dict[str, Any]], originals: Originals, owned: OwnedValues) -> Restored:
    """Put back what adoption replaced, remove what it added. An owned path
    whose value is neither what this program sets nor the original was
    edited by someone else: it is left alone and named in ``conflicts``."""
    out = copy.deepcopy(documents)
    machine = out[v1alpha1_index(out)].get("machine")
    if not isinstance(machine, dict):
        return Restored(out, [], [])  # nothing of this program's is left to take out
    changes: list[Change] = []
    conflicts: list[str] = []
    schematic = _FACTORY_IMAGE.match(owned.image)

    # A section the node no longer has is read as empty and not created:
    # only a value of this program's is ever put back, and that needs its section.
    install = machine.get("install") if isinstance(machine.get("install"), dict) else {}
    image = install.get("image")
    ours = image == owned.image or (schematic and isinstance(image, str) and (m := _FACTORY_IMAGE.match(image)) and m["id"] == schematic["id"])
    if "image" in originals.install:
        if ours:
            put_back(install, "image", originals.install["image"], "machine.install.image", changes)
        elif image != originals.install["image"]:
            conflicts.append(f"machine.install.image is {image!r}, neither this program's image nor the original")
    if "wipe" in originals.install and install.get("wipe") is False:
        put_back(install, "wipe", originals.install["wipe"], "machine.install.wipe", changes)

    kernel = machine.get("kernel") or {}
    keep = set(originals.modules or [])
    if isinstance(kernel.get("modules"), list):
        for item in list(kernel["modules"]):
            if isinstance(item, Mapping) and dict(item) == {"name": item.get("name")} and item.get("name") in NVIDIA_MODULES and item["name"] not in keep:
                kernel["modules"].remove(item)
                changes.append(Change(f"machine.kernel.modules[name={item['name']}]", dict(item), ABSENT))

    sysctls = machine.get("sysctls") if isinstance(machine.get("sysctls"), dict) else {}
    if BPF_JIT_HARDEN in originals.sysctls:
        current = sysctls.get(BPF_JIT_HARDEN)
        if current == "1" or current == originals.sysctls[BPF_JIT_HARDEN]:
            put_back(sysctls, BPF_JIT_HARDEN, originals.sysctls[BPF_JIT_HARDEN], f"machine.sysctls[{BPF_JIT_HARDEN}]", changes)
        else:
            conflicts.append(f"machine.sysctls[{BPF_JIT_HARDEN}] is {current!r}, neither \"1\" nor the original")

    labels = machine.get("nodeLabels") if isinstance(machine.get("nodeLabels"), dict) else {}
    for key, original in originals.node_labels.items():
        current = labels.get(key)
        if current in (owned.node_labels.get(key), original):
            put_back(labels, key, original, f"machine.nodeLabels[{key}]", changes)
        else:
            conflicts.append(f"machine.nodeLabels[{key}] is {current!r}, neither {owned.node_labels.get(key)!r} nor the original")

    files = machine.get("files") if isinstance(machine.get("files"), list) else []
    position = cri_position(files)
    if position is not None:
        _restore_cri_file(files, position, originals, owned, changes, conflicts)
    drop_empty(machine, originals.absent or [])
    return Restored(out, changes, conflicts)


def _restore_cri_file(files: list[Any], position: int, originals: Originals, owned: OwnedValues,
                      changes: list[Change], conflicts: list[str]) -> None:
    content = files[position].get("content")
    block = BLOCK.search(content) if isinstance(content, str) else None
    if block and block.group(0) not in (with_block("", owned.version), INNER_BLOCK):
        conflicts.append(f"{CRI_FILE}: the lines between the program's markers were edited")
        return
    take_out_block(files, position, (originals.cri_file or {}).get("entry"), changes)


# --------------------------------------------------------------------------
# The plan: what to apply to the node, in which mode, and why
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeState:
    """What the node reports: its version and schematic, the config it
    boots with next (``/system/state/config.yaml``) and the one it runs."""

    version: str
    schematic: str | None
    stored: str
    running: str


@dataclass(frozen=True)
class AdoptionPlan:
    owned: OwnedValues
    merged: Merged
    mode: str              # "none", "staged" or "auto" (the talosctl apply-config mode)
    reboot_paths: list[str]
    diff: list[str]
    reason: str

    @property
    def changed(self) -> bool:
        return self.merged.changed

    def lines(self) -> list[str]:
        """What preview and the log show: the changes, the mode and which of
        them make Talos reboot."""
        if not self.changed:
            return [f"nothing to do because {self.reason}"]
        out = [change.line() for change in self.merged.changes]
        if self.mode == "staged":
            out.append(f"apply with --mode=staged: {self.reason}; the upgrade's reboot applies it (no reboot of its own)")
        elif self.reboot_paths:
            out.append(f"apply with --mode=auto: Talos reboots the node, because it cannot apply {', '.join(self.reboot_paths)} without a reboot")
        else:
            out.append("apply with --mode=auto: Talos applies these without a reboot")
        return out


def plan_adoption(state: NodeState, owned: OwnedValues, *, upgrade_follows: bool, originals: Originals | None = None) -> AdoptionPlan:
    """Merge ``owned`` into the config the node boots with next, record the
    originals from the config it runs, check nothing else changes, and pick
    the apply mode: staged when an upgrade follows (its reboot applies the
    config: one reboot, not two), auto otherwise. Raises :class:`AdoptError`."""
    stored = load_documents(state.stored)
    running = load_documents(state.running)
    record = copy.deepcopy(originals) if originals is not None else Originals()
    record.record(running[v1alpha1_index(running)].get("machine") or {}, owned)
    merged = merge(stored, owned, record)
    guard(stored, merged.documents, set(owned.node_labels) | set(record.node_labels) | set(merged.originals.node_labels))
    if not merged.changed:
        pending = " (a staged config is waiting for the next reboot)" if stored != running else ""
        return AdoptionPlan(owned, merged, "none", [], [],
                            f"the node's config already holds every owned value for Talos {owned.version}{pending}")
    if upgrade_follows:
        mode, reason = "staged", f"the node runs Talos {state.version} and is upgraded to {owned.version} next"
    else:
        mode, reason = "auto", f"the node already runs Talos {state.version} from the wanted image"
    return AdoptionPlan(owned, merged, mode, reboot_paths(running, merged.documents, state.version),
                        diff_lines(dump_documents(stored), merged.text()), reason)
