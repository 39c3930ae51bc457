"""The adopt provider's input keys, in the camelCase of every other provider
of this program, and the snake_case spellings earlier versions stored
(``api_token``, ``restart_timeout_seconds``, the spec's ``vm_id``, ...). The
Pulumi state of every VM they adopted holds those: :func:`get_key` and
:func:`canonical` read both, so ``diff`` compares what the keys mean."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.renamed_keys import get_key as renamed_key

# Each key as earlier versions stored it (only the keys whose spelling changed).
OLD_KEYS = {
    "apiToken": "api_token", "restartTimeoutSeconds": "restart_timeout_seconds",
    "drainTimeoutSeconds": "drain_timeout_seconds", "nodeName": "node_name",
}
OLD_SPEC_KEYS = {"vmId": "vm_id", "checkMappings": "check_mappings"}

INPUT_KEYS = ("endpoint", "insecure", "apiToken", "username", "password", "spec", "restart", "restartTimeoutSeconds",
              "drainTimeoutSeconds", "nodeName", "kubeconfig")
SPEC_KEYS = ("node", "vmId", "name", "checkMappings", "slots")
_SPEC_DEFAULTS = {"checkMappings": True}


def get_key(data: Mapping[str, Any], key: str, default: Any = None, old: Mapping[str, str] = OLD_KEYS) -> Any:
    """``key`` of the inputs or the state, under its camelCase name or the
    snake_case one earlier versions stored."""
    return renamed_key(data, key, old, default)


def canonical_spec(spec: Any) -> Any:
    """The spec's keys under their camelCase names (an unknown spec as it is)."""
    if not isinstance(spec, Mapping):
        return spec
    return {key: get_key(spec, key, _SPEC_DEFAULTS.get(key), OLD_SPEC_KEYS) for key in SPEC_KEYS}


def canonical(props: Mapping[str, Any]) -> dict[str, Any]:
    """Every input key under its camelCase name, read from either spelling;
    values are not converted (a preview's unknown marker stays as it is)."""
    out = {key: get_key(props, key) for key in INPUT_KEYS}
    out["spec"] = canonical_spec(out["spec"])
    return out
