"""Image Factory schematics: which extensions, the factory's YAML form, and the
schematic ID computed offline exactly as the factory computes it.

The factory (siderolabs/image-factory ``pkg/schematic/schematic.go``) decodes a
posted schematic into its Go struct with ``KnownFields(true)``, marshals it
back and takes the lowercase hex SHA-256 of those bytes as the ID. So the ID
depends on the canonical form, not on how the file was written: ``{}`` and
``customization: {}\\n`` have the same ID. This module reproduces both halves:
a strict decoder for the factory's fields (``owner``; ``overlay``;
``customization`` with ``embeddedMachineConfiguration``, ``extraKernelArgs``,
``meta``, ``systemExtensions``, ``bootloader``, ``secureboot`` with
``enrollKeys`` and ``includeWellKnownCertificates``, ``diskImage``) and an
emitter that writes what the factory's YAML library writes for them (4-space
indents, sequences indented under their key, struct field order, empty fields
left out, its quoting rules).

The factory marshals with ``go.yaml.in/yaml/v4`` since image-factory v1.0.0
(v1.5.0 pins v4.0.0-rc.6+); earlier releases used ``gopkg.in/yaml.v3``. The
two differ only in how strings YAML 1.1 would read as booleans or base-60
numbers (``yes``, ``off``, ``12:30``) and ``<<`` are quoted (v4: single
quotes, v3: double quotes), in whitespace-only multi-line strings (v4: double
quoted) and in a literal block that starts with a line break (v3 drops it).
Every ID the factory's own tests publish is the same in both. ``yaml_version``
selects the dialect; the default is the current factory's. The vectors in
``tests/talos/factory_vectors_v4.json`` (made with yaml/v4) and
``tests/talos/factory_vectors.json`` (made with yaml.v3) pin both.

The factory does not sort extensions; :func:`extensions_for` does, so the same
set always gives the same ID.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from components.config import ConfigError, ConfigIssue, TalosConfig, describe_yaml_error, parse_version

FACTORY = "factory.talos.dev"

YamlVersion = Literal["v4", "v3"]

# Extension names (siderolabs/extensions; Talos 1.8 "What's new": -lts / -production
# variants of every NVIDIA extension). Pair lts with lts, production with
# production: the kmod and the toolkit ship matching driver versions.
_KMOD = {
    "proprietary": "siderolabs/nonfree-kmod-nvidia-{branch}",
    "open": "siderolabs/nvidia-open-gpu-kernel-modules-{branch}",
}
_TOOLKIT = "siderolabs/nvidia-container-toolkit-{branch}"
_NVIDIA_DRIVER_OR_TOOLKIT = re.compile(
    r"^siderolabs/(nonfree-kmod-nvidia|nvidia-open-gpu-kernel-modules|nvidia-container-toolkit)(-.*)?$"
)


class SchematicFormatError(ValueError):
    """The text is not a schematic in the Image Factory's format."""


# --------------------------------------------------------------------------
# Which extensions
# --------------------------------------------------------------------------


def extensions_for(talos: TalosConfig) -> list[str]:
    """The sorted extension set for a node: the NVIDIA kernel modules and the
    container toolkit of one branch, plus ``talos.extensions.extra``.

    An NVIDIA driver or toolkit listed in ``extra`` is refused: it would pair a
    second driver (or another branch) with the chosen one."""
    ext = talos.extensions
    issues: list[ConfigIssue] = []
    if parse_version(talos.version) < (1, 8, 0):
        issues.append(ConfigIssue(
            "talos.version", talos.version,
            "the NVIDIA extensions come in -lts/-production variants from Talos v1.8 on; use v1.8 or newer",
        ))
    for index, name in enumerate(ext.extra):
        if _NVIDIA_DRIVER_OR_TOOLKIT.match(name):
            issues.append(ConfigIssue(
                f"talos.extensions.extra[{index}]", name,
                "the NVIDIA kernel modules and container toolkit come from talos.extensions.driver "
                f"({ext.driver}) and talos.extensions.branch ({ext.branch}), always as a matching pair; "
                "remove this entry and set driver/branch instead",
            ))
    if issues:
        raise ConfigError(issues)
    wanted = {_KMOD[ext.driver].format(branch=ext.branch), _TOOLKIT.format(branch=ext.branch), *ext.extra}
    return sorted(wanted)


def installer_image(schematic_id: str, version: str, platform: str = "metal") -> str:
    """The factory installer image for a schematic and Talos version.

    From Talos v1.10 the factory serves platform installers,
    ``<platform>-installer/<id>:<version>``, which keep the platform's kernel
    arguments (siderolabs/image-factory#210, siderolabs/omni#1054). Before
    v1.10 only the generic ``installer/`` form exists."""
    if not re.fullmatch(r"[0-9a-f]{64}", schematic_id):
        raise ValueError(f"schematic ID {schematic_id!r} is not 64 lowercase hex digits")
    if not re.fullmatch(r"[a-z0-9-]+", platform):
        raise ValueError(f"platform {platform!r} is not a Talos platform name like metal or nocloud")
    if parse_version(version) >= (1, 10, 0):
        return f"{FACTORY}/{platform}-installer/{schematic_id}:{version}"
    return f"{FACTORY}/installer/{schematic_id}:{version}"


# --------------------------------------------------------------------------
# The factory's data model (field order is part of the ID)
# --------------------------------------------------------------------------


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


def render_schematic(
    extensions: Iterable[str],
    extra_kernel_args: Sequence[str] = (),
    meta: Mapping[int, str] | None = None,
    *,
    overlay: Overlay | None = None,
    secureboot_include_well_known_certificates: bool = False,
) -> str:
    """The schematic in the factory's canonical YAML (what it hashes).

    Extensions are written in the order given: pass them sorted
    (:func:`extensions_for` does)."""
    schematic = Schematic(
        extra_kernel_args=tuple(extra_kernel_args),
        meta=tuple(MetaValue(key, value) for key, value in sorted((meta or {}).items())),
        official_extensions=tuple(extensions),
        secureboot_include_well_known_certificates=secureboot_include_well_known_certificates,
        overlay=overlay or Overlay(),
    )
    return marshal(schematic)


def schematic_id(yaml_text: str, yaml_version: YamlVersion = "v4") -> str:
    """The factory's ID for a schematic written in its format (YAML or JSON);
    ``yaml_version="v3"`` gives what image-factory releases before v1.0.0
    computed."""
    return hashlib.sha256(marshal(parse_schematic(yaml_text), yaml_version).encode()).hexdigest()


# --------------------------------------------------------------------------
# Decoding: into the factory's struct, KnownFields(true) (v3 and v4 alike)
# --------------------------------------------------------------------------

_NULLS = {"", "~", "null", "Null", "NULL"}
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
# The decoder also takes YAML 1.1 booleans when the target field is a bool.
_OLD_BOOLS = {
    **{word: True for word in ("y", "Y", "yes", "Yes", "YES", "on", "On", "ON")},
    **{word: False for word in ("n", "N", "no", "No", "NO", "off", "Off", "OFF")},
}
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
    return node is None or (isinstance(node, yaml.ScalarNode) and node.style is None and node.value in _NULLS)


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
        value = _BOOLS.get(node.value, _OLD_BOOLS.get(node.value))
        if value is not None:
            return value
    raise SchematicFormatError(f"{path} must be true or false")


def _uint(node: yaml.Node | None, path: str, limit: int = 2**64 - 1) -> int:
    if _is_null(node):
        return 0
    value = _go_int(node.value) if isinstance(node, yaml.ScalarNode) and node.style is None else None
    if value is None or not 0 <= value <= limit:
        raise SchematicFormatError(f"{path} must be an integer from 0 to {limit}")
    return value


def _uint8(node: yaml.Node | None, path: str) -> int:
    return _uint(node, path, 255)


_GO_INT = re.compile(r"^[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$")
_GO_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ].*)?$")


def _go_int(text: str) -> int | None:
    """strconv.ParseInt(s, 0, 64) after dropping '_', as the decoder resolves ints."""
    plain = text.replace("_", "")
    if not _GO_INT.match(plain):
        return None
    sign = -1 if plain.startswith("-") else 1
    digits = plain.lstrip("+-")
    if digits[:2].lower() in ("0x", "0o", "0b"):
        value = int(digits, 0)
    elif len(digits) > 1 and digits.startswith("0"):
        value = int(digits, 8)
    else:
        value = int(digits)
    return sign * value


def _resolve_plain(text: str) -> tuple[str, Any]:
    """The library's resolve() for a plain scalar: (kind, value)."""
    if text in _NULLS:
        return "null", None
    if text in _BOOLS:
        return "bool", _BOOLS[text]
    if text in (".nan", ".NaN", ".NAN") or text.lstrip("+-") in (".inf", ".Inf", ".INF"):
        return "float", text
    if text[:1] and (text[0].isdigit() or text[0] in "+-."):
        if text[0].isdigit() and _TIMESTAMP.match(text):
            return "timestamp", text
        number = _go_int(text)
        if number is not None:
            return "int", number
        plain = text.replace("_", "")
        if _GO_FLOAT.match(plain):
            return "float", text
    return "str", text


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
    kind, value = _resolve_plain(node.value)
    if kind in ("float", "timestamp"):
        raise SchematicFormatError(f"{path}: {node.value!r} is a {kind}; quote it, or compute this schematic's ID with the factory")
    return value


# --------------------------------------------------------------------------
# Encoding: what the factory's Marshal writes for its struct
# --------------------------------------------------------------------------

_BEST_INDENT = 4
_OLD_BOOL_WORDS = set(_OLD_BOOLS)
_BASE60 = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")


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
        top.append(("overlay", _Struct(overlay)))
    custom: list[tuple[str, Any]] = []
    if schematic.embedded_machine_configuration:
        custom.append(("embeddedMachineConfiguration", schematic.embedded_machine_configuration))
    if schematic.extra_kernel_args:
        custom.append(("extraKernelArgs", list(schematic.extra_kernel_args)))
    if schematic.meta:
        custom.append(("meta", [_Struct([("key", m.key), ("value", m.value)]) for m in schematic.meta]))
    if schematic.official_extensions:
        custom.append(("systemExtensions", _Struct([("officialExtensions", list(schematic.official_extensions))])))
    if schematic.bootloader:
        custom.append(("bootloader", schematic.bootloader))
    secureboot: list[tuple[str, Any]] = []
    if schematic.secureboot_enroll_keys:
        secureboot.append(("enrollKeys", schematic.secureboot_enroll_keys))
    if schematic.secureboot_include_well_known_certificates:
        secureboot.append(("includeWellKnownCertificates", True))
    if secureboot:
        custom.append(("secureboot", _Struct(secureboot)))
    if schematic.disk_image_sector_size:
        custom.append(("diskImage", _Struct([("sectorSize", schematic.disk_image_sector_size)])))
    top.append(("customization", _Struct(custom)))
    lines: list[str] = []
    _emit_mapping(_Struct(top).items, 0, lines, first_prefix="", v3=yaml_version == "v3")
    return "".join(lines)


@dataclass(frozen=True)
class _Struct:
    """A Go struct: fields in declaration order (maps are sorted instead)."""

    items: list[tuple[str, Any]]


def _next_indent(indent: int) -> int:
    # Nested blocks align to the next multiple of the indent width.
    return _BEST_INDENT * ((indent + _BEST_INDENT) // _BEST_INDENT)


def _entries(value: _Struct | dict) -> list[tuple[str, Any]]:
    if isinstance(value, _Struct):
        return value.items
    return [(key, value[key]) for key in sorted(value, key=_GoKey)]


def _is_empty_block(value: Any) -> bool:
    return (isinstance(value, _Struct) and not value.items) or (isinstance(value, (dict, list)) and not value)


def _emit_mapping(items: list[tuple[str, Any]], indent: int, lines: list[str], first_prefix: str | None, *, v3: bool) -> None:
    """Keys at column ``indent``; the first key continues ``first_prefix``
    (a sequence dash) when given."""
    for position, (key, value) in enumerate(items):
        lead = first_prefix if position == 0 and first_prefix is not None else " " * indent
        key_text = _scalar(key, indent, in_key=True, v3=v3)
        if _is_empty_block(value):
            lines.append(f"{lead}{key_text}: {'[]' if isinstance(value, list) else '{}'}\n")
        elif isinstance(value, (_Struct, dict)):
            lines.append(f"{lead}{key_text}:\n")
            _emit_mapping(_entries(value), _next_indent(indent), lines, None, v3=v3)
        elif isinstance(value, list):
            lines.append(f"{lead}{key_text}:\n")
            _emit_sequence(value, _next_indent(indent), lines, v3=v3)
        else:
            lines.append(f"{lead}{key_text}: {_scalar(value, _next_indent(indent), v3=v3)}\n")


def _emit_sequence(items: list[Any], indent: int, lines: list[str], *, v3: bool) -> None:
    """Dashes at column ``indent``; item contents at ``indent + 2``."""
    for item in items:
        dash = " " * indent + "- "
        if _is_empty_block(item):
            lines.append(f"{dash}{'[]' if isinstance(item, list) else '{}'}\n")
        elif isinstance(item, (_Struct, dict)):
            _emit_mapping(_entries(item), indent + 2, lines, dash, v3=v3)
        elif isinstance(item, list):
            raise SchematicFormatError("a list directly inside a list cannot be checked offline")
        else:
            lines.append(f"{dash}{_scalar(item, indent + 2, v3=v3)}\n")


def _scalar(value: Any, block_indent: int, in_key: bool = False, *, v3: bool) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        raise SchematicFormatError(f"cannot write {value!r} in a schematic")
    return _string_scalar(value, block_indent, in_key, v3=v3)


def _string_scalar(text: str, block_indent: int, in_key: bool, *, v3: bool) -> str:
    """The library's ``stringv`` + libyaml's style selection. yaml.v3 double-
    quotes what YAML 1.1 would read as a bool or base-60 number; yaml/v4
    (``representer.go`` ``stringv``) single-quotes those and ``<<``, and writes
    a multi-line string with no visible character double-quoted
    (``shouldUseLiteralStyle``)."""
    if any(ch in text for ch in "\u2028\u2029"):
        raise SchematicFormatError(f"{text!r}: Unicode line separators cannot be checked offline")
    kind, _ = _resolve_plain(text)
    compat = bool(_BASE60.match(text)) or text in _OLD_BOOL_WORDS or (not v3 and text == "<<")
    can_use_plain = kind == "str" and text != "<<" and not compat
    analysis = _analyze(text, v3=v3)
    if "\n" in text:
        style = "literal" if v3 or (len(text) >= 2 and not text.isspace()) else "double"
    elif can_use_plain:
        style = "plain"
    elif compat and not v3:
        style = "single"
    else:
        style = "double"
    if in_key and analysis.multiline:
        style = "double"
    if style == "plain" and (not analysis.block_plain_allowed or not text):
        style = "single"
    if style == "single" and not analysis.single_quoted_allowed:
        style = "double"
    if style == "literal" and (not analysis.block_allowed or in_key):
        style = "double"
    if style == "plain":
        return text
    if style == "single":
        return "'" + text.replace("'", "''") + "'"
    if style == "double":
        return _double_quoted(text)
    return _literal(text, block_indent, v3=v3)


@dataclass
class _Analysis:
    multiline: bool
    block_plain_allowed: bool
    single_quoted_allowed: bool
    block_allowed: bool


def _printable(ch: str) -> bool:
    code = ord(ch)
    return code == 0x0A or 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xD7FF or (0xE000 <= code <= 0xFFFD and code != 0xFEFF)


def _analyze(text: str, *, v3: bool) -> _Analysis:
    """libyaml's yaml_emitter_analyze_scalar (block context). yaml/v4 counts a
    tab apart (``tab_characters``: no plain or single-quoted style, a literal
    block still allowed); yaml.v3 counts it as a special character."""
    if not text:
        return _Analysis(False, True, True, False)
    block_indicators = text.startswith(("---", "..."))
    special = tabs = line_breaks = False
    leading_space = leading_break = trailing_space = trailing_break = False
    break_space = space_break = previous_space = previous_break = False
    preceded_by_ws = True
    last = len(text) - 1
    for i, ch in enumerate(text):
        # yaml.v3: "followed by whitespace" is the end of the text or a blank.
        followed_by_ws = i == last or text[i + 1] in " \t"
        if i == 0:
            if ch in "#,[]{}&*!|>'\"%@`":
                block_indicators = True
            if ch in "?:-" and followed_by_ws:
                block_indicators = True
        else:
            if ch == ":" and followed_by_ws:
                block_indicators = True
            if ch == "#" and preceded_by_ws:
                block_indicators = True
        if ch == "\t" and not v3:
            tabs = True
        elif not _printable(ch):
            special = True
        if ch == "\n":
            line_breaks = True
        if ch == " ":
            leading_space = leading_space or i == 0
            trailing_space = trailing_space or i == last
            break_space = break_space or previous_break
            previous_space, previous_break = True, False
        elif ch == "\n":
            leading_break = leading_break or i == 0
            trailing_break = trailing_break or i == last
            space_break = space_break or previous_space
            previous_space, previous_break = False, True
        else:
            previous_space = previous_break = False
        preceded_by_ws = ch in " \t\n"
    block_plain = single = block = True
    if leading_space or leading_break or trailing_space or trailing_break:
        block_plain = False
    if trailing_space:
        block = False
    if break_space:
        block_plain = single = False
    if space_break or tabs or special:
        block_plain = single = False
    if space_break or special:
        block = False
    if line_breaks:
        block_plain = False
    if block_indicators:
        block_plain = False
    return _Analysis(line_breaks, block_plain, single, block)


_ESCAPES = {"\0": "0", "\a": "a", "\b": "b", "\t": "t", "\n": "n", "\v": "v", "\f": "f", "\r": "r",
            "\x1b": "e", '"': '"', "\\": "\\", "\x85": "N", "\xa0": "_"}


def _double_quoted(text: str) -> str:
    out = []
    for ch in text:
        code = ord(ch)
        if _printable(ch) and ch not in '"\\\n' and code != 0xFEFF:
            out.append(ch)
        elif ch in _ESCAPES:
            out.append("\\" + _ESCAPES[ch])
        elif code <= 0xFF:
            out.append(f"\\x{code:02X}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04X}")
        else:
            out.append(f"\\U{code:08X}")
    return '"' + "".join(out) + '"'


def _literal(text: str, indent: int, *, v3: bool) -> str:
    if v3 and text.startswith("\n"):
        # yaml.v3 3.0.1 drops a leading line break here (go-yaml/yaml#755;
        # yaml/v4 keeps it); the ID for such a value depends on the v3 build.
        raise SchematicFormatError(f"{text!r}: a value starting with a line break cannot be checked offline with yaml.v3")
    hints = str(_BEST_INDENT) if text[0] == " " else ""
    if not text.endswith("\n"):
        hints += "-"
    elif len(text) >= 2 and text[-2] == "\n":
        hints += "+"
    body = text[:-1] if text.endswith("\n") else text
    out = ["|" + hints]
    for line in body.split("\n"):
        out.append("\n" + (" " * indent + line if line else ""))
    return "".join(out)


class _GoKey:
    """yaml.v3's map key order (sorter.go keyList.Less) for string keys:
    letters before digits only where runs differ, numbers compared by value."""

    def __init__(self, key: str):
        self.key = key

    def __lt__(self, other: _GoKey) -> bool:
        a, b = self.key, other.key
        digits = False
        for i in range(min(len(a), len(b))):
            if a[i] == b[i]:
                digits = a[i].isdigit()
                continue
            al, bl = a[i].isalpha(), b[i].isalpha()
            if al and bl:
                return a[i] < b[i]
            if al or bl:
                return al if digits else bl
            an = bn = 0
            if a[i] == "0" or b[i] == "0":
                j = i - 1
                while j >= 0 and a[j].isdigit():
                    if a[j] != "0":
                        an = bn = 1
                        break
                    j -= 1
            ai = i
            while ai < len(a) and a[ai].isdigit():
                an = an * 10 + int(a[ai])
                ai += 1
            bi = i
            while bi < len(b) and b[bi].isdigit():
                bn = bn * 10 + int(b[bi])
                bi += 1
            if an != bn:
                return an < bn
            if ai != bi:
                return ai < bi
            return a[i] < b[i]
        return len(a) < len(b)


def planned_installer(talos: TalosConfig) -> tuple[str, str, str]:
    """This stack's schematic YAML, its ID (computed offline) and installer
    image: what the node should run."""
    schematic_yaml = render_schematic(extensions_for(talos))
    sid = schematic_id(schematic_yaml)
    return schematic_yaml, sid, installer_image(sid, talos.version, talos.platform)
