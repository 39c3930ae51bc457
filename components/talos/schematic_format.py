"""The Image Factory's schematic format: its Go struct (field order is part
of the ID), the strict decoder and the Marshal it hashes.

The factory (siderolabs/image-factory ``pkg/schematic/schematic.go``) decodes a
posted schematic into its Go struct with ``KnownFields(true)`` and marshals
it back: the decoder here takes the factory's fields (``owner``; ``overlay``;
``customization`` with ``embeddedMachineConfiguration``, ``extraKernelArgs``,
``meta``, ``systemExtensions``, ``bootloader``, ``secureboot`` with
``enrollKeys`` and ``includeWellKnownCertificates``, ``diskImage``) and
refuses what it refuses; :func:`marshal` writes the struct with empty fields
left out, through :mod:`components.talos.goyaml`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from components.config import describe_yaml_error
from components.talos.goyaml import BOOLS, NULLS, OLD_BOOLS, Struct, UnwritableValue, emit, go_int, resolve_plain

YamlVersion = Literal["v4", "v3"]


class SchematicFormatError(ValueError):
    """The text is not a schematic in the Image Factory's format."""


@dataclass(frozen=True)
class MetaValue:
    key: int
    value: str


@dataclass(frozen=True)
class Overlay:
    image: str = ""
    name: str = ""
    options: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Schematic:
    extra_kernel_args: tuple[str, ...] = ()
    meta: tuple[MetaValue, ...] = ()
    official_extensions: tuple[str, ...] = ()
    bootloader: str = ""
    secureboot_include_well_known_certificates: bool = False
    disk_image_sector_size: int = 0
    overlay: Overlay = field(default_factory=Overlay)
    # The schematic's owner: only the factory's Enterprise edition accepts it
    # (the public factory refuses a schematic with an owner); part of the ID.
    owner: str = ""
    # A machine configuration baked into the image (YAML text).
    embedded_machine_configuration: str = ""
    # systemd-boot's secure-boot-enroll: off, manual, if-safe or force.
    secureboot_enroll_keys: str = ""


# --------------------------------------------------------------------------
# Decoding: into the factory's struct, KnownFields(true) (v3 and v4 alike)
# --------------------------------------------------------------------------

_STR_TAG = "tag:yaml.org,2002:str"
_IMPLICIT = yaml.resolver.Resolver()


def parse_schematic(text: str) -> Schematic:
    """Decode a schematic as the factory does; refuse what it refuses."""
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as error:
        raise SchematicFormatError(describe_yaml_error(error)) from None
    if not documents:
        raise SchematicFormatError("the file is empty; a schematic has at least `customization: {}`")
    if len(documents) > 1:
        raise SchematicFormatError("more than one YAML document; the factory reads a single schematic")
    root = documents[0]
    fields = _mapping(root, "schematic", {"owner", "overlay", "customization"})
    overlay = Overlay()
    if "overlay" in fields:
        o = _mapping(fields["overlay"], "overlay", {"image", "name", "options"})
        options = _any(o["options"], "overlay.options") if "options" in o else None
        if options is not None and not isinstance(options, dict):
            raise SchematicFormatError("overlay.options must be a mapping")
        overlay = Overlay(
            image=_string(o.get("image"), "overlay.image"),
            name=_string(o.get("name"), "overlay.name"),
            options=options or None,
        )
    c = _mapping(fields.get("customization"), "customization",
                 {"embeddedMachineConfiguration", "extraKernelArgs", "meta", "systemExtensions", "bootloader", "secureboot", "diskImage"})
    meta = []
    for index, item in enumerate(_sequence(c.get("meta"), "customization.meta")):
        m = _mapping(item, f"customization.meta[{index}]", {"key", "value"})
        meta.append(MetaValue(_uint8(m.get("key"), f"customization.meta[{index}].key"),
                              _string(m.get("value"), f"customization.meta[{index}].value")))
    extensions = _mapping(c.get("systemExtensions"), "customization.systemExtensions", {"officialExtensions"})
    secureboot = _mapping(c.get("secureboot"), "customization.secureboot", {"enrollKeys", "includeWellKnownCertificates"})
    disk_image = _mapping(c.get("diskImage"), "customization.diskImage", {"sectorSize"})
    return Schematic(
        extra_kernel_args=_strings(c.get("extraKernelArgs"), "customization.extraKernelArgs"),
        meta=tuple(meta),
        official_extensions=_strings(extensions.get("officialExtensions"), "customization.systemExtensions.officialExtensions"),
        bootloader=_string(c.get("bootloader"), "customization.bootloader"),
        secureboot_include_well_known_certificates=_bool(
            secureboot.get("includeWellKnownCertificates"), "customization.secureboot.includeWellKnownCertificates"),
        disk_image_sector_size=_uint(disk_image.get("sectorSize"), "customization.diskImage.sectorSize"),
        overlay=overlay,
        owner=_string(fields.get("owner"), "owner"),
        embedded_machine_configuration=_string(c.get("embeddedMachineConfiguration"), "customization.embeddedMachineConfiguration"),
        secureboot_enroll_keys=_string(secureboot.get("enrollKeys"), "customization.secureboot.enrollKeys"),
    )


def _is_null(node: yaml.Node | None) -> bool:
    """Absent, or a plain null scalar (``~``, ``null``, nothing)."""
    return node is None or (isinstance(node, yaml.ScalarNode) and node.style is None and node.value in NULLS)


def _mapping(node: yaml.Node | None, path: str, allowed: set[str]) -> dict[str, yaml.Node]:
    if _is_null(node):
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise SchematicFormatError(f"{path} must be a mapping")
    result: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if key not in allowed:
            raise SchematicFormatError(f"unknown key {key!r} in {path}; the factory accepts only: {', '.join(sorted(allowed))}")
        if key in result:
            raise SchematicFormatError(f"key {key!r} appears twice in {path}")
        result[key] = value_node
    return result


def _sequence(node: yaml.Node | None, path: str) -> list[yaml.Node]:
    if _is_null(node):
        return []
    if not isinstance(node, yaml.SequenceNode):
        raise SchematicFormatError(f"{path} must be a list")
    return list(node.value)


def _string(node: yaml.Node | None, path: str) -> str:
    if _is_null(node):
        return ""
    if not isinstance(node, yaml.ScalarNode):
        raise SchematicFormatError(f"{path} must be a string")
    # A string field keeps the scalar's text, whatever it looks like.
    return node.value


def _strings(node: yaml.Node | None, path: str) -> tuple[str, ...]:
    items = []
    for index, item in enumerate(_sequence(node, path)):
        if _is_null(item):
            raise SchematicFormatError(f"{path}[{index}] is empty")
        items.append(_string(item, f"{path}[{index}]"))
    return tuple(items)


def _bool(node: yaml.Node | None, path: str) -> bool:
    if _is_null(node):
        return False
    if isinstance(node, yaml.ScalarNode):
        value = BOOLS.get(node.value, OLD_BOOLS.get(node.value))
        if value is not None:
            return value
    raise SchematicFormatError(f"{path} must be true or false")


def _uint(node: yaml.Node | None, path: str, limit: int = 2**64 - 1) -> int:
    if _is_null(node):
        return 0
    value = go_int(node.value) if isinstance(node, yaml.ScalarNode) and node.style is None else None
    if value is None or not 0 <= value <= limit:
        raise SchematicFormatError(f"{path} must be an integer from 0 to {limit}")
    return value


def _uint8(node: yaml.Node | None, path: str) -> int:
    return _uint(node, path, 255)


def _any(node: yaml.Node, path: str) -> Any:
    """Decode into ``any`` as the factory does, for the value kinds we can write
    back exactly (strings, ints, bools, null, lists, string-keyed maps)."""
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _any(key_node, path)
            if not isinstance(key, str):
                raise SchematicFormatError(f"{path}: only string keys can be checked offline (got {key!r})")
            result[key] = _any(value_node, f"{path}.{key}")
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_any(item, f"{path}[{index}]") for index, item in enumerate(node.value)]
    if node.style is not None or (node.tag == _STR_TAG and _IMPLICIT.resolve(yaml.ScalarNode, node.value, (True, False)) != _STR_TAG):
        return node.value  # quoted, or tagged !!str
    kind, value = resolve_plain(node.value)
    if kind in ("float", "timestamp"):
        raise SchematicFormatError(f"{path}: {node.value!r} is a {kind}; quote it, or compute this schematic's ID with the factory")
    return value


# --------------------------------------------------------------------------
# Encoding: what the factory's Marshal writes for its struct
# --------------------------------------------------------------------------


def marshal(schematic: Schematic, yaml_version: YamlVersion = "v4") -> str:
    """The factory's Marshal of its Schematic struct, with yaml/v4 (current)
    or yaml.v3 (image-factory before v1.0.0)."""
    if yaml_version not in ("v4", "v3"):
        raise ValueError(f"yaml_version {yaml_version!r}: expected 'v4' or 'v3'")
    top: list[tuple[str, Any]] = []
    if schematic.owner:
        top.append(("owner", schematic.owner))
    o = schematic.overlay
    if o.image or o.name or o.options:
        overlay: list[tuple[str, Any]] = [("image", o.image), ("name", o.name)]
        if o.options:
            overlay.append(("options", dict(o.options)))
        top.append(("overlay", Struct(overlay)))
    custom: list[tuple[str, Any]] = []
    if schematic.embedded_machine_configuration:
        custom.append(("embeddedMachineConfiguration", schematic.embedded_machine_configuration))
    if schematic.extra_kernel_args:
        custom.append(("extraKernelArgs", list(schematic.extra_kernel_args)))
    if schematic.meta:
        custom.append(("meta", [Struct([("key", m.key), ("value", m.value)]) for m in schematic.meta]))
    if schematic.official_extensions:
        custom.append(("systemExtensions", Struct([("officialExtensions", list(schematic.official_extensions))])))
    if schematic.bootloader:
        custom.append(("bootloader", schematic.bootloader))
    secureboot: list[tuple[str, Any]] = []
    if schematic.secureboot_enroll_keys:
        secureboot.append(("enrollKeys", schematic.secureboot_enroll_keys))
    if schematic.secureboot_include_well_known_certificates:
        secureboot.append(("includeWellKnownCertificates", True))
    if secureboot:
        custom.append(("secureboot", Struct(secureboot)))
    if schematic.disk_image_sector_size:
        custom.append(("diskImage", Struct([("sectorSize", schematic.disk_image_sector_size)])))
    top.append(("customization", Struct(custom)))
    try:
        return emit(top, v3=yaml_version == "v3")
    except UnwritableValue as error:
        raise SchematicFormatError(str(error)) from None
