"""One change at an owned path (:class:`Change`: what the preview and the log
show) and the small edits merge and restore make with it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from components.talos.config_documents import get_path


@dataclass(frozen=True)
class Change:
    path: str
    before: Any
    after: Any

    def line(self) -> str:
        if self.after is ABSENT:
            return f"{self.path}: remove {_show(self.before)}"
        if self.before is ABSENT:
            return f"{self.path}: add {_show(self.after)}"
        return f"{self.path}: {_show(self.before)} -> {_show(self.after)}"


class _Absent:
    """A path with no value (a Change's before or after)."""


ABSENT = _Absent()


def _show(value: Any) -> str:
    if isinstance(value, str) and "\n" in value:
        return f"<{len(value.splitlines())} lines>"
    return repr(value)


def set_value(mapping: dict[str, Any], key: str, value: Any, path: str, changes: list[Change]) -> None:
    before = mapping.get(key, ABSENT)
    if before is ABSENT or before != value or type(before) is not type(value):
        mapping[key] = value
        changes.append(Change(path, before, value))


def unset(mapping: dict[str, Any], key: str, path: str, changes: list[Change]) -> None:
    if key in mapping:
        changes.append(Change(path, mapping.pop(key), ABSENT))


def put_back(mapping: dict[str, Any], key: str, original: Any, path: str, changes: list[Change]) -> None:
    if original is None:
        unset(mapping, key, path, changes)
    else:
        set_value(mapping, key, original, path, changes)


def drop_empty(machine: dict[str, Any], absent: Iterable[str]) -> None:
    """Remove containers left empty that the node did not have."""
    for path in sorted(absent, key=lambda item: -item.count(".")):
        parent_path, _, key = path.rpartition(".")
        parent = get_path(machine, parent_path) if parent_path else machine
        if isinstance(parent, dict) and key in parent and parent[key] in ({}, [], None):
            del parent[key]
