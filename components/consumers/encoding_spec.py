"""What the Jellyfin encoding provider is given, as one value: the server's
URL, the HTTP timeout and the wanted EncodingOptions values
(components.consumers.jellyfin). The API key is not in here: it travels next
to the spec as a Pulumi secret (and is an output too, because ``delete`` only
sees outputs).

The keys are camelCase, as in every other provider of this program
(``timeoutSeconds``, ``decodeCodecs``). Earlier versions stored snake_case
keys (``timeout_seconds``, ``api_key``, ``changed_settings``, ...), and the
Pulumi state of every Jellyfin they configured holds them: :data:`OLD_KEYS`
names each, ``from_dict()`` and :func:`canonical` read both spellings
(components.renamed_keys), so the provider compares what the keys mean, not
how they were spelled."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.config import StackConfig
from components.consumers.jellyfin import EncodingWanted, encoding_wanted
from components.renamed_keys import get_key

# The client's timeout for a state that does not carry one.
DEFAULT_TIMEOUT_SECONDS = 30.0

# Each key of the provider's inputs and outputs as earlier versions stored it
# (only the keys whose spelling changed; ``url``, ``settings``, ``reasons``,
# ``originals`` and ``applied`` kept theirs).
OLD_KEYS = {
    "apiKey": "api_key", "timeoutSeconds": "timeout_seconds", "decodeCodecs": "decode_codecs",
    "pendingChanges": "pending_changes", "changedSettings": "changed_settings", "lastChanges": "last_changes",
}
# The renamed keys the outputs hold: every input is carried into them, except
# the check-time ``pendingChanges``.
OLD_OUTPUT_KEYS = {new: old for new, old in OLD_KEYS.items() if new != "pendingChanges"}

_ABSENT = object()


def canonical(props: Mapping[str, Any]) -> dict[str, Any]:
    """``props`` with every renamed key under its camelCase name, read from
    either spelling (the camelCase one first); the old spellings are left
    out, every other key is kept as it is."""
    old_names = set(OLD_KEYS.values())
    out = {key: value for key, value in props.items() if key not in old_names and key not in OLD_KEYS}
    for key in OLD_KEYS:
        value = get_key(props, key, OLD_KEYS, _ABSENT)
        if value is not _ABSENT:
            out[key] = value
    return out


@dataclass(frozen=True)
class EncodingSpec:
    url: str
    timeout_seconds: float
    wanted: EncodingWanted

    @property
    def decode_codecs(self) -> tuple[str, ...]:
        return tuple(self.wanted.hardware_decoding_codecs)

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "timeoutSeconds": self.timeout_seconds, "settings": self.wanted.settings(),
                "reasons": dict(self.wanted.reasons), "decodeCodecs": list(self.decode_codecs)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EncodingSpec:
        """Reads either spelling of each key (:data:`OLD_KEYS`). Raises
        ValueError/KeyError/TypeError for settings this program does not own
        or lacks (EncodingWanted.from_settings)."""
        timeout = get_key(data, "timeoutSeconds", OLD_KEYS)
        return cls(url=str(data["url"]), timeout_seconds=float(timeout or DEFAULT_TIMEOUT_SECONDS),
                   wanted=EncodingWanted.from_settings(dict(data["settings"]), dict(data.get("reasons") or {})))


def encoding_spec(cfg: StackConfig) -> EncodingSpec:
    """This stack's Jellyfin server and the values its GPUs call for (raises
    ConfigError as encoding_wanted does)."""
    return EncodingSpec(url=str(cfg.jellyfin.url), timeout_seconds=cfg.jellyfin.timeout_seconds, wanted=encoding_wanted(cfg))
