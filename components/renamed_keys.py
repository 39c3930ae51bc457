"""Provider keys read under their current name or the one earlier versions
stored: the Pulumi state of a stack deployed before a key was renamed still
holds the old spelling, and a provider must read it the same (the snake_case
keys of host prep, the VM adopt provider and Jellyfin became camelCase)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def get_key(data: Mapping[str, Any], key: str, old_names: Mapping[str, str], default: Any = None) -> Any:
    """``data[key]``, else ``data[old_names[key]]``, else ``default``."""
    if key in data:
        return data[key]
    return data.get(old_names.get(key, key), default)


def canonical_keys(data: Mapping[str, Any], keys: tuple[str, ...], old_names: Mapping[str, str],
                   defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Each of ``keys`` under its current name, read from either spelling
    (:func:`get_key`), a missing one as its default (else None). Values are
    not converted (a preview's unknown marker stays as it is)."""
    defaults = defaults or {}
    return {key: get_key(data, key, old_names, defaults.get(key)) for key in keys}


def old_names_held(data: Mapping[str, Any], old_names: Mapping[str, str]) -> list[str]:
    """The old spellings ``data`` holds in place of the current ones, sorted.

    For renamed *outputs*: when ``diff`` reports no change the engine keeps
    the old outputs as they are (pulumi/pulumi pkg/resource/deploy/step.go,
    ``SameStep.Apply``: "Retain the ID and outputs"), so an output read under
    its new name would stay empty until something else changed. A provider
    whose state still holds old output names reports an update, which writes
    them anew."""
    return sorted(old for new, old in old_names.items() if old in data and new not in data)
