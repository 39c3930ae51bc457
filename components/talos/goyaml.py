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
``pkg/schematic/schematic.go``) resolves scalars the same way.

The block emitter (:func:`emit`) writes what the factory's ``Marshal`` writes:
``go.yaml.in/yaml/v4`` (image-factory v1.0.0 on) or ``gopkg.in/yaml.v3``
(before). Their ``encode.go``/``representer.go`` ``stringv`` pick a string's
style, libyaml's ``emitterc.go`` (``yaml_emitter_analyze_scalar``) says which
styles a text allows, and ``sorter.go`` orders map keys; 4-space indents,
sequences indented under their key, empty blocks as ``{}``/``[]``. The two
versions differ only in how strings YAML 1.1 would read as booleans or
base-60 numbers (``yes``, ``off``, ``12:30``) and ``<<`` are quoted (v4:
single quotes, v3: double quotes), in whitespace-only multi-line strings (v4:
double quoted) and in a literal block that starts with a line break (v3
drops it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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


# --------------------------------------------------------------------------
# Writing: the block emitter
# --------------------------------------------------------------------------


class UnwritableValue(ValueError):
    """A value whose Go YAML form this emulation cannot reproduce exactly."""


_BEST_INDENT = 4
_OLD_BOOL_WORDS = set(OLD_BOOLS)
_BASE60 = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")


def emit(items: list[tuple[str, Any]], *, v3: bool) -> str:
    """A top-level mapping (a :class:`Struct`'s fields) as the library writes it."""
    lines: list[str] = []
    _emit_mapping(items, 0, lines, first_prefix="", v3=v3)
    return "".join(lines)


@dataclass(frozen=True)
class Struct:
    """A Go struct: fields in declaration order (maps are sorted instead)."""

    items: list[tuple[str, Any]]


def _next_indent(indent: int) -> int:
    # Nested blocks align to the next multiple of the indent width.
    return _BEST_INDENT * ((indent + _BEST_INDENT) // _BEST_INDENT)


def _entries(value: Struct | dict) -> list[tuple[str, Any]]:
    if isinstance(value, Struct):
        return value.items
    return [(key, value[key]) for key in sorted(value, key=_GoKey)]


def _is_empty_block(value: Any) -> bool:
    return (isinstance(value, Struct) and not value.items) or (isinstance(value, (dict, list)) and not value)


def _emit_mapping(items: list[tuple[str, Any]], indent: int, lines: list[str], first_prefix: str | None, *, v3: bool) -> None:
    """Keys at column ``indent``; the first key continues ``first_prefix``
    (a sequence dash) when given."""
    for position, (key, value) in enumerate(items):
        lead = first_prefix if position == 0 and first_prefix is not None else " " * indent
        key_text = _scalar(key, indent, in_key=True, v3=v3)
        if _is_empty_block(value):
            lines.append(f"{lead}{key_text}: {'[]' if isinstance(value, list) else '{}'}\n")
        elif isinstance(value, (Struct, dict)):
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
        elif isinstance(item, (Struct, dict)):
            _emit_mapping(_entries(item), indent + 2, lines, dash, v3=v3)
        elif isinstance(item, list):
            raise UnwritableValue("a list directly inside a list cannot be checked offline")
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
        raise UnwritableValue(f"cannot write {value!r} in a schematic")
    return _string_scalar(value, block_indent, in_key, v3=v3)


def _string_scalar(text: str, block_indent: int, in_key: bool, *, v3: bool) -> str:
    """The library's ``stringv`` + libyaml's style selection. yaml.v3 double-
    quotes what YAML 1.1 would read as a bool or base-60 number; yaml/v4
    (``representer.go`` ``stringv``) single-quotes those and ``<<``, and writes
    a multi-line string with no visible character double-quoted
    (``shouldUseLiteralStyle``)."""
    if any(ch in text for ch in "\u2028\u2029"):
        raise UnwritableValue(f"{text!r}: Unicode line separators cannot be checked offline")
    kind, _ = resolve_plain(text)
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
        raise UnwritableValue(f"{text!r}: a value starting with a line break cannot be checked offline with yaml.v3")
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
