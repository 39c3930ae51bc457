"""The README's Configuration table, parsed row by row, and the config model's
keys in the same spelling, so tests can compare the two and walk every key.

A row's first cell names one key or several, comma-separated:
``host.address``, ``host.port``, ``host.user``; a name that starts with a dot
replaces the last part of the key before it (``vm.network.bridge``,
``.vlanId`` -> ``vm.network.vlanId``). List items are written ``gpus[].id``.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass

from pydantic import BaseModel

from components.config import StackConfig
from tests.conftest import ROOT

_KEY = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class Row:
    keys: tuple[str, ...]
    default: str
    meaning: str
    line: str


def configuration_section(readme: str | None = None) -> str:
    text = readme if readme is not None else (ROOT / "README.md").read_text()
    assert "\n## Configuration\n" in text, "README.md has no '## Configuration' section"
    return text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]


def configuration_rows(readme: str | None = None) -> list[Row]:
    """Every row of the Configuration table, its keys expanded."""
    rows: list[Row] = []
    for line in configuration_section(readme).splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 3, f"a Configuration row has three cells (Key, Default, Meaning): {line}"
        keys: list[str] = []
        for name in _KEY.findall(cells[0]):
            if name.startswith("."):
                assert keys, f"{name!r} continues no key: {line}"
                name = keys[-1].rsplit(".", 1)[0] + name
            keys.append(name)
        assert keys, f"no key in the first cell: {line}"
        rows.append(Row(tuple(keys), cells[1], cells[2], line))
    return rows


def documented_keys(readme: str | None = None) -> list[str]:
    return [key for row in configuration_rows(readme) for key in row.keys]


def _nested_model(annotation: object) -> tuple[type[BaseModel] | None, bool]:
    """The model an annotation holds (``X``, ``X | None``, ``list[X]``), and
    whether it is a list of them."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if origin is typing.Annotated:
        return _nested_model(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _nested_model(arg)
            if found[0] is not None:
                return found
    if origin is list:
        model, _ = _nested_model(typing.get_args(annotation)[0])
        return model, model is not None
    return None, False


def model_keys(model: type[BaseModel] = StackConfig, prefix: str = "") -> list[str]:
    """Every leaf key of the config model, spelled as in the README
    (camelCase aliases, ``[]`` for list items)."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{field.alias or name}"
        nested, is_list = _nested_model(field.annotation)
        if nested is None:
            keys.append(path)
        else:
            keys += model_keys(nested, f"{path}[]." if is_list else f"{path}.")
    return keys
