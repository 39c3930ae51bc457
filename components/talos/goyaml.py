"""YAML as Go reads and writes it: the scalar resolution of
``gopkg.in/yaml.v3`` and ``go.yaml.in/yaml/v4`` (``resolve.go``: which plain
scalars are null, bool, int, float or a timestamp), and a PyYAML loader and
dumper built on it for Talos machine configs.

Talos decodes and encodes its machine config with these libraries
(siderolabs/talos ``pkg/machinery/config/encoder/encoder.go`` and
``configloader/internal/decoder/decoder.go``: ``gopkg.in/yaml.v3`` up to
v1.11, ``go.yaml.in/yaml/v4`` from v1.12), so a plain ``0o644`` is an int,
``yes``/``on`` are strings and dates stay strings. The Image
Factory's schematic decoder (siderolabs/image-factory
``pkg/schematic/schematic.go``) resolves scalars the same way; its encoder is
in :mod:`components.talos.goyaml_emitter`.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

NULLS = {"", "~", "null", "Null", "NULL"}
BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
# The decoder also takes YAML 1.1 booleans when the target field is a bool.
OLD_BOOLS = {
    **{word: True for word in ("y", "Y", "yes", "Yes", "YES", "on", "On", "ON")},
    **{word: False for word in ("n", "N", "no", "No", "NO", "off", "Off", "OFF")},
}

_GO_INT = re.compile(r"^[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$")
_GO_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ].*)?$")


def go_int(text: str) -> int | None:
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


def resolve_plain(text: str) -> tuple[str, Any]:
    """The library's resolve() for a plain scalar: (kind, value)."""
    if text in NULLS:
        return "null", None
    if text in BOOLS:
        return "bool", BOOLS[text]
    if text in (".nan", ".NaN", ".NAN") or text.lstrip("+-") in (".inf", ".Inf", ".INF"):
        return "float", text
    if text[:1] and (text[0].isdigit() or text[0] in "+-."):
        if text[0].isdigit() and _TIMESTAMP.match(text):
            return "timestamp", text
        number = go_int(text)
        if number is not None:
            return "int", number
        plain = text.replace("_", "")
        if _GO_FLOAT.match(plain):
            return "float", text
    return "str", text


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
    kind, value = resolve_plain(text)
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
    kind, _ = resolve_plain(value)
    style = "'" if kind != "str" or go_int(value) is not None else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


TalosDumper.add_representer(str, _represent_str)
