"""Pulumi's marker for an input not known yet (during a preview), as the
engine sends it to a dynamic provider (pulumi/runtime/rpc.py ``UNKNOWN``),
here without importing the SDK, and the one test for it."""

from __future__ import annotations

from typing import Any

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def known(value: Any) -> bool:
    """True when no part of ``value`` (nested dicts and lists) is unknown."""
    if value == UNKNOWN:
        return False
    if isinstance(value, dict):
        return all(known(v) for v in value.values())
    if isinstance(value, list):
        return all(known(v) for v in value)
    return True
