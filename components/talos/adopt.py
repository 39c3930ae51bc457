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

Which changes make Talos reboot: ``REBOOT_FREE`` lists what Talos applies
without a reboot (Talos source ``CanApplyImmediate``,
internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go, the same
list in the docs' editing-machine-configuration page of each version).
"""

from __future__ import annotations

import copy
import difflib
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from components.config import parse_version
from components.talos.machine_config import BPF_JIT_HARDEN, CRI_CUSTOMIZATION_PATH, NVIDIA_MODULES, OwnedValues, cri_plugin_key
from components.talos.module_documents import document_modules
from components.talos.schematic import _go_int, _resolve_plain


class AdoptError(ValueError):
    """The running config cannot be adopted safely; the message says which
    path and why. Nothing was applied."""


# --------------------------------------------------------------------------
# YAML as Talos (Go's yaml.v3) reads and writes it
# --------------------------------------------------------------------------


class TalosLoader(yaml.SafeLoader):
    """Resolves plain scalars the way yaml.v3 does: ``0o644`` is an int,
    ``yes``/``on`` are strings, dates stay strings. PyYAML's YAML 1.1 rules
    would read ``permissions: 0o644`` as a string and write it back quoted,
    which Talos would then refuse."""


TalosLoader.yaml_implicit_resolvers = {}


def _construct_plain(loader: TalosLoader, node: yaml.ScalarNode) -> Any:
    text = loader.construct_scalar(node)
    if node.style is not None:
        return text
    kind, value = _resolve_plain(text)
    if kind == "float":
        return float(text.replace("_", "").lower().replace(".inf", "inf").replace(".nan", "nan"))
    return value  # None, a bool, an int, or the text itself (a string, a timestamp kept as text)


TalosLoader.add_constructor("tag:yaml.org,2002:str", _construct_plain)


class TalosDumper(yaml.SafeDumper):
    """Block style; a string yaml.v3 (or YAML 1.1) would read as something
    else is quoted; multi-line strings are literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    kind, _ = _resolve_plain(value)
    style = "'" if kind != "str" or _go_int(value) is not None else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


TalosDumper.add_representer(str, _represent_str)


def load_documents(text: str) -> list[Any]:
    """The documents of a machine config, as ``talosctl read
    /system/state/config.yaml`` prints it (empty documents dropped)."""
    try:
        documents = [document for document in yaml.load_all(text, Loader=TalosLoader) if document is not None]
    except yaml.YAMLError as error:
        raise AdoptError(f"the machine config is not valid YAML: {error}") from None
    if not documents:
        raise AdoptError("the machine config is empty")
    for index, document in enumerate(documents):
        if not isinstance(document, dict):
            raise AdoptError(f"document {index} of the machine config is not a mapping")
    return documents


def dump_documents(documents: Iterable[Mapping[str, Any]]) -> str:
    return "---\n".join(yaml.dump(document, Dumper=TalosDumper, sort_keys=False, default_flow_style=False, width=1 << 16)
                        for document in documents)


def v1alpha1_index(documents: list[Any]) -> int:
    """The v1alpha1 document (``version: v1alpha1``, no ``kind``)."""
    for index, document in enumerate(documents):
        if document.get("version") == "v1alpha1" and "kind" not in document:
            return index
    raise AdoptError("the machine config has no v1alpha1 document (`version: v1alpha1`); is this a Talos machine config?")


# --------------------------------------------------------------------------
# Originals: what the node had at the owned paths before the first change
# --------------------------------------------------------------------------

# Containers this program may have to create (and so remove again).
_CONTAINERS = ("install", "kernel", "kernel.modules", "sysctls", "nodeLabels", "files")


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
            self.absent = [path for path in _CONTAINERS if _get(machine, path) is None]
        install = machine.get("install") or {}
        for key in ("image", "wipe"):
            self.install.setdefault(key, install.get(key))
        if self.modules is None:
            self.modules = [name for name in _module_names(machine) if name in NVIDIA_MODULES]
        sysctls = machine.get("sysctls") or {}
        self.sysctls.setdefault(BPF_JIT_HARDEN, sysctls.get(BPF_JIT_HARDEN))
        labels = machine.get("nodeLabels") or {}
        for key in owned.node_labels:
            self.node_labels.setdefault(key, labels.get(key))
        if self.cri_file is None:
            self.cri_file = {"entry": _cri_entry(machine)}


def _get(data: Mapping[str, Any], dotted: str) -> Any:
    current: Any = data
    for part in dotted.split("."):
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return current


def _module_names(machine: Mapping[str, Any]) -> list[str]:
    modules = ((machine.get("kernel") or {}).get("modules")) or []
    return [str(item.get("name")) for item in modules if isinstance(item, Mapping)]


def _cri_position(files: list[Any]) -> int | None:
    """Where the CRI customization file is in ``machine.files``: the first
    entry with its path, the one merge, record and restore all work on."""
    return next((index for index, entry in enumerate(files) if isinstance(entry, Mapping) and entry.get("path") == CRI_CUSTOMIZATION_PATH), None)


def _cri_entry(machine: Mapping[str, Any]) -> dict[str, Any] | None:
    """A copy of the node's CRI customization file entry (its values are
    scalars), or None."""
    files = machine.get("files")
    position = _cri_position(files) if isinstance(files, list) else None
    return dict(files[position]) if position is not None else None


# --------------------------------------------------------------------------
# The CRI customization file: this program's marked lines in the node's file
# --------------------------------------------------------------------------

BLOCK_BEGIN = "# BEGIN proxmox-talos-gpu: nvidia as containerd's default runtime"
BLOCK_END = "# END proxmox-talos-gpu"
# How changes and refusals name the CRI customization file entry.
_CRI_FILE = f"machine.files[path={CRI_CUSTOMIZATION_PATH}]"
# The marked line alone, as it goes into the node's own containerd table.
_INNER_BLOCK = f'{BLOCK_BEGIN}\n  default_runtime_name = "nvidia"\n{BLOCK_END}\n'
_BLOCK = re.compile(rf"^{re.escape(BLOCK_BEGIN)}\n.*?^{re.escape(BLOCK_END)}\n", re.MULTILINE | re.DOTALL)


def _runtime_table(version: str) -> list[str]:
    return ["plugins", cri_plugin_key(version), "containerd"]


def _table_header(version: str) -> str:
    return f'[plugins."{cri_plugin_key(version)}".containerd]'


def strip_block(content: str) -> str:
    """``content`` without this program's marked lines."""
    return _BLOCK.sub("", content)


def _toml(content: str, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(content)
    except tomllib.TOMLDecodeError as error:
        raise AdoptError(f"{what} is not valid TOML ({error}); fix it on the node or set proxmox-talos-gpu:talos.nvidiaDefaultRuntime: false") from None


def _runtime_settings(parsed: dict[str, Any], version: str, where: str) -> dict[str, Any]:
    """The node's ``[plugins."<cri>".containerd]`` table, or {} when it has
    none. A key on the way that is not a table cannot take the line."""
    table = parsed
    keys = _runtime_table(version)
    for depth, key in enumerate(keys):
        table = table.get(key)
        if table is None:
            return {}
        if not isinstance(table, dict):
            dotted = ".".join(f'"{part}"' if "." in part else part for part in keys[:depth + 1])
            raise AdoptError(f"{where}: {dotted} is {table!r}, not a table, so default_runtime_name cannot go under it; "
                             "fix it on the node or set proxmox-talos-gpu:talos.nvidiaDefaultRuntime: false")
    return table


def with_block(content: str, version: str) -> str:
    """The node's file content with this program's default-runtime line
    merged in: inside the node's own ``[...containerd]`` table when it has
    one, otherwise as a table of its own at the end. Refused when the node
    sets another default runtime or the result would not be the same TOML
    plus this one key."""
    where = f"{_CRI_FILE}.content"
    base = strip_block(content)
    parsed = _toml(base, where)
    existing = _runtime_settings(parsed, version, where).get("default_runtime_name")
    if existing is not None and existing != "nvidia":
        raise AdoptError(
            f"{where} already sets default_runtime_name = {existing!r}; this program would make it \"nvidia\". "
            "Remove that line on the node, or set proxmox-talos-gpu:talos.nvidiaDefaultRuntime: false")
    if existing == "nvidia":
        return base  # the node's own line already does it; a second one would be a duplicate key
    header = _table_header(version)
    lines = base.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    at = next((index for index, line in enumerate(lines) if line.strip() == header), None)
    if at is not None:
        merged = "".join(lines[:at + 1]) + _INNER_BLOCK + "".join(lines[at + 1:])
    else:
        block = f'{BLOCK_BEGIN}\n{header}\n  default_runtime_name = "nvidia"\n{BLOCK_END}\n'
        merged = "".join(lines) + block
    expected = parsed  # not read again: the key goes in place
    target = expected
    for key in _runtime_table(version):
        target = target.setdefault(key, {})
    target["default_runtime_name"] = "nvidia"
    try:
        result = tomllib.loads(merged)
    except tomllib.TOMLDecodeError as error:
        result = {"error": str(error)}
    if result != expected:
        raise AdoptError(
            f"{where}: the node defines {header} in a form this program cannot add a line to without rewriting the file "
            f"({result.get('error', 'the merge changes other keys')}); add default_runtime_name = \"nvidia\" there by hand, "
            "or set proxmox-talos-gpu:talos.nvidiaDefaultRuntime: false")
    return merged


# --------------------------------------------------------------------------
# The merge
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    path: str
    before: Any
    after: Any

    def line(self) -> str:
        if self.after is _ABSENT:
            return f"{self.path}: remove {_show(self.before)}"
        if self.before is _ABSENT:
            return f"{self.path}: add {_show(self.after)}"
        return f"{self.path}: {_show(self.before)} -> {_show(self.after)}"


class _Absent:
    """A path with no value (a Change's before or after)."""


_ABSENT = _Absent()


def _show(value: Any) -> str:
    if isinstance(value, str) and "\n" in value:
        return f"<{len(value.splitlines())} lines>"
    return repr(value)


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


def _set(mapping: dict[str, Any], key: str, value: Any, path: str, changes: list[Change]) -> None:
    before = mapping.get(key, _ABSENT)
    if before is _ABSENT or before != value or type(before) is not type(value):
        mapping[key] = value
        changes.append(Change(path, before, value))


def _unset(mapping: dict[str, Any], key: str, path: str, changes: list[Change]) -> None:
    if key in mapping:
        changes.append(Change(path, mapping.pop(key), _ABSENT))


def _put_back(mapping: dict[str, Any], key: str, original: Any, path: str, changes: list[Change]) -> None:
    if original is None:
        _unset(mapping, key, path, changes)
    else:
        _set(mapping, key, original, path, changes)


def _drop_empty(machine: dict[str, Any], absent: Iterable[str]) -> None:
    """Remove containers left empty that the node did not have."""
    for path in sorted(absent, key=lambda item: -item.count(".")):
        parent_path, _, key = path.rpartition(".")
        parent = _get(machine, parent_path) if parent_path else machine
        if isinstance(parent, dict) and key in parent and parent[key] in ({}, [], None):
            del parent[key]


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
    _set(install, "image", owned.image, "machine.install.image", changes)
    # Never wipe: the node's disks may hold Ceph OSDs.
    _set(install, "wipe", False, "machine.install.wipe", changes)

    # A module a KernelModuleConfig document loads is not listed again.
    present = set(_module_names(machine)) | set(document_modules(out))
    missing = [name for name in owned.modules if name not in present]
    modules = machine.setdefault("kernel", {}).setdefault("modules", []) if missing else []
    for name in missing:
        if name not in present:
            modules.append({"name": name})
            changes.append(Change(f"machine.kernel.modules[name={name}]", _ABSENT, {"name": name}))

    sysctls = machine.setdefault("sysctls", {})
    if BPF_JIT_HARDEN in owned.sysctls:
        _set(sysctls, BPF_JIT_HARDEN, owned.sysctls[BPF_JIT_HARDEN], f"machine.sysctls[{BPF_JIT_HARDEN}]", changes)
    else:
        _put_back(sysctls, BPF_JIT_HARDEN, record.sysctls.get(BPF_JIT_HARDEN), f"machine.sysctls[{BPF_JIT_HARDEN}]", changes)

    labels = machine.setdefault("nodeLabels", {})
    for key, value in owned.node_labels.items():
        _set(labels, key, value, f"machine.nodeLabels[{key}]", changes)
    for key in [key for key in record.node_labels if key not in owned.node_labels]:
        # A label this program set earlier and no longer wants.
        _put_back(labels, key, record.node_labels.pop(key), f"machine.nodeLabels[{key}]", changes)

    _merge_cri_file(machine, owned, record, changes)
    _drop_empty(machine, record.absent or [])
    return Merged(out, changes, record)


def _merge_cri_file(machine: dict[str, Any], owned: OwnedValues, record: Originals, changes: list[Change]) -> None:
    files = machine.setdefault("files", [])
    position = _cri_position(files)
    if owned.default_runtime:
        if position is None:
            entry = {"content": with_block("", owned.version), "permissions": 0o644, "path": CRI_CUSTOMIZATION_PATH, "op": "create"}
            files.append(entry)
            changes.append(Change(_CRI_FILE, _ABSENT, entry["content"]))
            return
        entry = files[position]
        before = str(entry.get("content") or "")
        after = with_block(before, owned.version)
        if after != before:
            entry["content"] = after
            changes.append(Change(f"{_CRI_FILE}.content", before, after))
        return
    if position is not None:
        _take_out_block(files, position, (record.cri_file or {}).get("entry"), changes)


def _take_out_block(files: list[Any], position: int, original: Mapping[str, Any] | None, changes: list[Change]) -> None:
    """Take this program's lines out of the CRI file entry at ``position``
    (merge when the default runtime is no longer wanted, and restore): the
    whole entry goes when the node had none (``original``) and nothing else
    is left in it; otherwise its content loses the marked lines."""
    entry = files[position]
    content = str(entry.get("content") or "")
    if original is None and strip_block(content) == "":
        del files[position]
        changes.append(Change(_CRI_FILE, content, _ABSENT))
    elif strip_block(content) != content:
        after = _without_block(content, original)
        files[position] = {**entry, "content": after}
        changes.append(Change(f"{_CRI_FILE}.content", content, after))


def _without_block(content: str, original: Mapping[str, Any] | None) -> str:
    """``content`` without this program's lines: the original bytes where
    only a final line break was added to them."""
    stripped = strip_block(content)
    before = (original or {}).get("content")
    return before if isinstance(before, str) and stripped.rstrip("\n") == before.rstrip("\n") else stripped


# --------------------------------------------------------------------------
# The guard: nothing outside the owned paths may change
# --------------------------------------------------------------------------


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
    for path in reversed(_CONTAINERS):  # kernel.modules before kernel: a kernel left empty goes too
        parent_path, _, key = path.rpartition(".")
        parent = _get(machine, parent_path) if parent_path else machine
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


# --------------------------------------------------------------------------
# Reboots, diffs, restore
# --------------------------------------------------------------------------

# What Talos applies without a reboot (v1alpha1 document), per first minor
# of a list; every other v1alpha1 change reboots the node in `--mode=auto`.
# Documents other than v1alpha1 never need a reboot.
_REBOOT_FREE_MACHINE = ("ca", "acceptedCAs", "time", "certCANs", "install", "network", "sysfs", "sysctls", "logging",
                        "controlplane", "kubelet", "kernel", "registries", "pods", "seccompProfiles", "nodeAnnotations",
                        "nodeLabels", "nodeTaints")
REBOOT_FREE: dict[tuple[int, int], dict[str, tuple[str, ...]]] = {
    (1, 8): {"top": ("debug", "cluster"), "machine": _REBOOT_FREE_MACHINE,
             "features": ("kubernetesTalosAPIAccess", "kubePrism", "localDNS")},
    (1, 9): {"top": ("debug", "cluster"), "machine": _REBOOT_FREE_MACHINE,
             "features": ("kubernetesTalosAPIAccess", "kubePrism", "hostDNS", "imageCache", "nodeAddressSortAlgorithm")},
}


def _reboot_free(version: str) -> dict[str, tuple[str, ...]]:
    major, minor, _ = parse_version(version)
    keys = [key for key in REBOOT_FREE if key <= (major, minor)]
    return REBOOT_FREE[max(keys)] if keys else REBOOT_FREE[min(REBOOT_FREE)]


def reboot_paths(before: list[dict[str, Any]], after: list[dict[str, Any]], running_version: str) -> list[str]:
    """The changed v1alpha1 paths that Talos ``running_version`` cannot apply
    without a reboot."""
    free = _reboot_free(running_version)
    old, new = before[v1alpha1_index(before)], after[v1alpha1_index(after)]
    paths: list[str] = []
    for key in sorted(set(old) | set(new)):
        if key in free["top"] or key == "machine" or old.get(key) == new.get(key):
            continue
        paths.append(f".{key}")
    old_machine, new_machine = old.get("machine") or {}, new.get("machine") or {}
    for key in sorted(set(old_machine) | set(new_machine)):
        if old_machine.get(key) == new_machine.get(key) or key in free["machine"]:
            continue
        if key == "features":
            of, nf = old_machine.get(key) or {}, new_machine.get(key) or {}
            paths += [f".machine.features.{name}" for name in sorted(set(of) | set(nf))
                      if of.get(name) != nf.get(name) and name not in free["features"]]
        else:
            paths.append(f".machine.{key}")
    return paths


# YAML `key: value` and TOML `key = value` lines whose key names a secret.
_SECRET_LINE = re.compile(r"^(\s*-?\s*\"?(?:key|token|secret|crt|bootstraptoken|secretboxencryptionsecret|aescbcencryptionsecret|"
                          r"password|auth|identitytoken|id|ca)\"?\s*[:=]\s*)(\S.*)$", re.IGNORECASE)


def _mask(line: str) -> str:
    match = _SECRET_LINE.match(line)
    return f"{match.group(1)}***" if match and len(match.group(2)) >= 8 else line


def diff_lines(before_text: str, after_text: str, *, name: str = "machine config") -> list[str]:
    """The changed lines only (no context), values of secret-looking keys
    masked: safe to show in a preview or log."""
    lines = difflib.unified_diff(before_text.splitlines(), after_text.splitlines(), f"{name} (node)", f"{name} (wanted)", n=0, lineterm="")
    return [line[0] + _mask(line[1:]) if line[:1] in "+-" and not line.startswith(("+++", "---")) else line for line in lines]


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
            _put_back(install, "image", originals.install["image"], "machine.install.image", changes)
        elif image != originals.install["image"]:
            conflicts.append(f"machine.install.image is {image!r}, neither this program's image nor the original")
    if "wipe" in originals.install and install.get("wipe") is False:
        _put_back(install, "wipe", originals.install["wipe"], "machine.install.wipe", changes)

    kernel = machine.get("kernel") or {}
    keep = set(originals.modules or [])
    if isinstance(kernel.get("modules"), list):
        for item in list(kernel["modules"]):
            if isinstance(item, Mapping) and dict(item) == {"name": item.get("name")} and item.get("name") in NVIDIA_MODULES and item["name"] not in keep:
                kernel["modules"].remove(item)
                changes.append(Change(f"machine.kernel.modules[name={item['name']}]", dict(item), _ABSENT))

    sysctls = machine.get("sysctls") if isinstance(machine.get("sysctls"), dict) else {}
    if BPF_JIT_HARDEN in originals.sysctls:
        current = sysctls.get(BPF_JIT_HARDEN)
        if current == "1" or current == originals.sysctls[BPF_JIT_HARDEN]:
            _put_back(sysctls, BPF_JIT_HARDEN, originals.sysctls[BPF_JIT_HARDEN], f"machine.sysctls[{BPF_JIT_HARDEN}]", changes)
        else:
            conflicts.append(f"machine.sysctls[{BPF_JIT_HARDEN}] is {current!r}, neither \"1\" nor the original")

    labels = machine.get("nodeLabels") if isinstance(machine.get("nodeLabels"), dict) else {}
    for key, original in originals.node_labels.items():
        current = labels.get(key)
        if current in (owned.node_labels.get(key), original):
            _put_back(labels, key, original, f"machine.nodeLabels[{key}]", changes)
        else:
            conflicts.append(f"machine.nodeLabels[{key}] is {current!r}, neither {owned.node_labels.get(key)!r} nor the original")

    files = machine.get("files") if isinstance(machine.get("files"), list) else []
    position = _cri_position(files)
    if position is not None:
        _restore_cri_file(files, position, originals, owned, changes, conflicts)
    _drop_empty(machine, originals.absent or [])
    return Restored(out, changes, conflicts)


def _restore_cri_file(files: list[Any], position: int, originals: Originals, owned: OwnedValues,
                      changes: list[Change], conflicts: list[str]) -> None:
    content = files[position].get("content")
    block = _BLOCK.search(content) if isinstance(content, str) else None
    if block and block.group(0) not in (with_block("", owned.version), _INNER_BLOCK):
        conflicts.append(f"{_CRI_FILE}: the lines between the program's markers were edited")
        return
    _take_out_block(files, position, (originals.cri_file or {}).get("entry"), changes)


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
