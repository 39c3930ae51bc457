"""JellyfinTranscoding: Jellyfin's NVENC/NVDEC settings, set through its API."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi.dynamic

from components.config import ConfigError, ConfigIssue, StackConfig
from components.consumers.encoding_spec import encoding_spec
from components.consumers.provider import JellyfinEncodingProvider
from components.options import child_options


class JellyfinEncoding(pulumi.dynamic.Resource, module="consumers", name="JellyfinEncoding"):
    """Jellyfin's EncodingOptions keys this program owns (dynamic resource).
    Its attributes are its state keys as they are (the SDK names them after
    the props)."""

    changedSettings: pulumi.Output[list[str]]  # noqa: N815 - the provider's output name
    decodeCodecs: pulumi.Output[list[str]]  # noqa: N815
    originals: pulumi.Output[dict[str, Any]]
    lastChanges: pulumi.Output[list[str]]  # noqa: N815

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(JellyfinEncodingProvider(), name, {
            **props,
            # Outputs the provider computes; declared so they are readable.
            "originals": None,
            "applied": None,
            "changedSettings": None,
            "lastChanges": None,
        }, opts)


class JellyfinTranscoding(pulumi.ComponentResource):
    """Turns on NVENC/NVDEC transcoding in a running Jellyfin: hardware
    acceleration ``nvenc``, hardware encoding, enhanced NVDEC, and the
    decoding codecs the GPU generation supports. Reads first, changes only
    what differs, keeps every other setting; ``pulumi destroy`` puts back the
    values it changed."""

    changed_settings: pulumi.Output[list[str]]
    decode_codecs: pulumi.Output[list[str]]

    def __init__(self, name: str, cfg: StackConfig, api_key: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None):
        # Everything is checked before the first registration.
        if not cfg.jellyfin.enabled:
            raise ConfigError([ConfigIssue("jellyfin.enabled", False, "JellyfinTranscoding needs jellyfin.enabled: true")])
        if not cfg.jellyfin.url:
            raise ConfigError([ConfigIssue("jellyfin.url", None, "required when jellyfin.enabled is true, e.g. http://jellyfin.media.svc:8096")])
        spec = encoding_spec(cfg)
        super().__init__("proxmox-talos-gpu:consumers:JellyfinTranscoding", name, None, opts)

        settings = spec.wanted.settings()
        encoding = JellyfinEncoding(
            f"{name}-encoding",
            {
                **spec.to_dict(),
                # Secret end to end, whatever the caller passed.
                "apiKey": pulumi.Output.secret(api_key),
            },
            # delete only sees outputs, so the key is an output too: secret.
            opts=child_options(self, opts, additional_secret_outputs=["apiKey"]),
        )
        self.encoding = encoding
        self.changed_settings = encoding.changedSettings
        self.decode_codecs = encoding.decodeCodecs
        self.register_outputs({
            "changedSettings": self.changed_settings,
            "decodeCodecs": self.decode_codecs,
            "settings": settings,
        })
