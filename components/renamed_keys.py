"""Provider input keys read under their current name or the one earlier
versions stored: the Pulumi state of a stack deployed before a key was
renamed still holds the old spelling, and a provider must read it the same
(host prep's and the VM adopt provider's snake_case keys became camelCase)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def get_key(data: Mapping[str, Any], key: str, old_names: Mapping[str, str], default: Any = None) -> Any:
    """``data[key]``, else ``data[old_names[key]]``, else ``default``."""
    if key in data:
        return data[key]
    return data.get(old_names.get(key, key), default)
