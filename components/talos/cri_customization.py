"""The CRI customization file, ``/etc/cri/conf.d/20-customization.part``:
containerd merges only that one file (Talos docs "Containerd"), so this
program's default-runtime line goes into the node's own file, between
markers, and comes out again without touching the node's lines."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from typing import Any

from components.talos.config_documents import AdoptError
from components.talos.machine_config import CRI_CUSTOMIZATION_PATH, cri_plugin_key

BLOCK_BEGIN = "# BEGIN proxmox-talos-gpu: nvidia as containerd's default runtime"
BLOCK_END = "# END proxmox-talos-gpu"
# How changes and refusals name the CRI customization file entry.
CRI_FILE = f"machine.files[path={CRI_CUSTOMIZATION_PATH}]"
# The marked line alone, as it goes into the node's own containerd table.
INNER_BLOCK = f'{BLOCK_BEGIN}\n  default_runtime_name = "nvidia"\n{BLOCK_END}\n'
BLOCK = re.compile(rf"^{re.escape(BLOCK_BEGIN)}\n.*?^{re.escape(BLOCK_END)}\n", re.MULTILINE | re.DOTALL)


def _runtime_table(version: str) -> list[str]:
    return ["plugins", cri_plugin_key(version), "containerd"]


def _table_header(version: str) -> str:
    return f'[plugins."{cri_plugin_key(version)}".containerd]'


def strip_block(content: str) -> str:
    """``content`` without this program's marked lines."""
    return BLOCK.sub("", content)


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
    where = f"{CRI_FILE}.content"
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
        merged = "".join(lines[:at + 1]) + INNER_BLOCK + "".join(lines[at + 1:])
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


def cri_position(files: list[Any]) -> int | None:
    """Where the CRI customization file is in ``machine.files``: the first
    entry with its path, the one merge, record and restore all work on."""
    return next((index for index, entry in enumerate(files) if isinstance(entry, Mapping) and entry.get("path") == CRI_CUSTOMIZATION_PATH), None)


def cri_entry(machine: Mapping[str, Any]) -> dict[str, Any] | None:
    """A copy of the node's CRI customization file entry (its values are
    scalars), or None."""
    files = machine.get("files")
    position = cri_position(files) if isinstance(files, list) else None
    return dict(files[position]) if position is not None else None
