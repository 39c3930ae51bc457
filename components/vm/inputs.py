"""The adopt provider's input keys, in the camelCase of every other provider
of this program, and the snake_case spellings earlier versions stored
(``api_token``, ``restart_timeout_seconds``, the spec's ``vm_id``, ...). The
Pulumi state of every VM they adopted holds those: :func:`canonical` and
:func:`canonical_spec` read both, so ``diff`` compares what the keys mean."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.renamed_keys import canonical_keys

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


def canonical_spec(spec: Any) -> Any:
    """The spec's keys under their camelCase names (an unknown spec as it is)."""
    if not isinstance(spec, Mapping):
        return spec
    return canonical_keys(spec, SPEC_KEYS, OLD_SPEC_KEYS, _SPEC_DEFAULTS)


def canonical(props: Mapping[str, Any]) -> dict[str, Any]:
    """Every input key under its camelCase name, read from either spelling;
    values are not converted (a preview's unknown marker stays as it is)."""
    out = canonical_keys(props, INPUT_KEYS, OLD_KEYS)
    out["spec"] = canonical_spec(out["spec"])
    return out
