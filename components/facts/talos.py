"""What talosctl prints about a Talos node: its version (``talosctl
version``), its extensions and the schematic it booted from (``talosctl get
extensions``), its machine configs (``talosctl get machineconfig``). Which
command to run is components/talos/talosctl.py; these only read its output.

A reader of YAML names the command when the output is not YAML (a wrapper
script or a proxy page that exits 0) and raises ValueError, as every Talos
reader of this program does."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from components.facts.parsing import json_stream
from components.talos.talosctl import RUNNING_ID

# Entries of `talosctl get extensions` that are not system extensions: the
# Image Factory's "schematic" (its version is the schematic ID) and the
# combined "modules.dep" Talos builds for every extension's kernel modules
# (siderolabs/talos internal/pkg/extensions/kernel_modules.go@v1.13.9).
NOT_EXTENSIONS = ("schematic", "modules.dep")


def load_yaml_output(output: str, command: str) -> list:
    """The YAML documents talosctl printed; output that is not YAML is an
    error naming the command (exit 0 with garbage: a wrapper, a proxy page)."""
    try:
        return list(yaml.safe_load_all(output))
    except yaml.YAMLError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "not YAML"
        raise ValueError(f"`talosctl {command}` printed something that is not YAML ({first}): {output.strip()[:80]!r}") from None


def parse_server_version(output: str) -> str:
    """The node's Talos version (``Tag:`` under ``Server:``) from
    ``talosctl version``."""
    _, server, rest = output.partition("Server:")
    if not server:
        raise ValueError("`talosctl version` printed no Server section (is the node reachable?)")
    match = re.search(r"^\s*Tag:\s*(v\d+\.\d+\.\d+\S*)\s*$", rest, re.MULTILINE)
    if not match:
        raise ValueError("`talosctl version` printed no server Tag line")
    return match.group(1)


# --------------------------------------------------------------------------
# talosctl get extensions -o yaml | -o json
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class TalosExtension:
    """One ExtensionStatus resource: its spec is an extensions.Layer, ``image``
    and ``metadata`` (name, version, author, ...), pkg/machinery/extensions/
    config.go and metadata.go@v1.13.9."""

    name: str
    version: str
    image: str = ""

    @property
    def is_system_extension(self) -> bool:
        return self.name not in NOT_EXTENSIONS


def parse_extensions(output: str) -> list[TalosExtension]:
    """``talosctl get extensions`` as ``-o yaml`` (``node:`` plus the resource,
    documents separated by ``---``, cmd/talosctl/cmd/talos/output/yaml.go) or
    ``-o json`` (one indented object per resource, back to back, output/
    json.go): every entry, with the factory's ``schematic`` and Talos'
    ``modules.dep`` (see :attr:`TalosExtension.is_system_extension`). An entry
    whose name is empty is left out, as Talos does when it labels the node
    (internal/app/machined/pkg/controllers/k8s/node_label_spec.go@v1.13.9)."""
    stripped = output.strip()
    if not stripped:
        return []
    if stripped[0] in "{[":
        try:
            documents = json_stream(stripped)
        except ValueError as error:
            raise ValueError(f"`talosctl get extensions` printed something that is not YAML or JSON ({error}): {stripped[:80]!r}") from None
    else:
        documents = load_yaml_output(stripped, "get extensions")
    flat: list[Any] = []
    for document in documents:
        flat.extend(document if isinstance(document, list) else [document])
    extensions = []
    for index, document in enumerate(flat):
        if document is None:
            continue
        spec = document.get("spec") if isinstance(document, dict) else None
        meta = spec.get("metadata") if isinstance(spec, dict) else None
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
            raise ValueError(f"`talosctl get extensions` printed a resource with no spec.metadata.name (resource {index}): "
                             f"{str(document)[:80]!r}")
        if meta["name"]:
            extensions.append(TalosExtension(meta["name"], str(meta.get("version") or ""), str(spec.get("image") or "")))
    return extensions


def parse_extension_names(output: str) -> list[str]:
    """The names of the system extensions ``talosctl get extensions`` lists."""
    return [extension.name for extension in parse_extensions(output) if extension.is_system_extension]


def parse_schematic(output: str) -> str | None:
    """The schematic ID the node booted from: the Image Factory adds an
    extension named ``schematic`` whose version is the ID. None when the node
    was not installed from a factory image."""
    found = next((extension for extension in parse_extensions(output) if extension.name == "schematic"), None)
    return found.version or None if found else None


# --------------------------------------------------------------------------
# talosctl get machineconfig <id> -o yaml
# --------------------------------------------------------------------------


def parse_machine_config(output: str, resource_id: str = RUNNING_ID) -> str:
    """The machine config text in ``talosctl get machineconfig <id> -o yaml``
    (the resource's spec is the config as a YAML string, cmd/talosctl/cmd/talos/
    output/yaml.go)."""
    for document in load_yaml_output(output, f"get machineconfig {resource_id}"):
        if isinstance(document, dict) and (document.get("metadata") or {}).get("id") == resource_id:
            spec = document.get("spec")
            if isinstance(spec, str):
                return spec
    raise ValueError(f"`talosctl get machineconfig {resource_id}` printed no {resource_id} MachineConfig resource")


def parse_running_config(output: str) -> str:
    return parse_machine_config(output, RUNNING_ID)
