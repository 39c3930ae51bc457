"""What the Jellyfin encoding provider is given, as one value: the server's
URL, the HTTP timeout and the wanted EncodingOptions values
(components.consumers.jellyfin), in the keys the state already holds. The API
key is not in here: it travels next to the spec as a Pulumi secret (and is
an output too, because ``delete`` only sees outputs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.config import StackConfig
from components.consumers.jellyfin import EncodingWanted, encoding_wanted

# The client's timeout for a state that does not carry one.
DEFAULT_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class EncodingSpec:
    url: str
    timeout_seconds: float
    wanted: EncodingWanted

    @property
    def decode_codecs(self) -> tuple[str, ...]:
        return tuple(self.wanted.hardware_decoding_codecs)

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "timeout_seconds": self.timeout_seconds, "settings": self.wanted.settings(),
                "reasons": dict(self.wanted.reasons), "decode_codecs": list(self.decode_codecs)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EncodingSpec:
        """Raises ValueError/KeyError/TypeError for settings this program
        does not own or lacks (EncodingWanted.from_settings)."""
        return cls(url=str(data["url"]), timeout_seconds=float(data.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS),
                   wanted=EncodingWanted.from_settings(dict(data["settings"]), dict(data.get("reasons") or {})))


def encoding_spec(cfg: StackConfig) -> EncodingSpec:
    """This stack's Jellyfin server and the values its GPUs call for (raises
    ConfigError as encoding_wanted does)."""
    return EncodingSpec(url=str(cfg.jellyfin.url), timeout_seconds=cfg.jellyfin.timeout_seconds, wanted=encoding_wanted(cfg))
