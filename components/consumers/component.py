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
    """Jellyfin's EncodingOptions keys this program owns (dynamic resource)."""

    changed_settings: pulumi.Output[list[str]]
    decode_codecs: pulumi.Output[list[str]]
    originals: pulumi.Output[dict[str, Any]]
    last_changes: pulumi.Output[list[str]]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(JellyfinEncodingProvider(), name, {
            **props,
            # Outputs the provider computes; declared so they are readable.
            "originals": None,
            "applied": None,
            "changed_settings": None,
            "last_changes": None,
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
                "api_key": pulumi.Output.secret(api_key),
            },
            # delete only sees outputs, so the key is an output too: secret.
            opts=child_options(self, opts, additional_secret_outputs=["api_key"]),
        )
        self.encoding = encoding
        self.changed_settings = encoding.changed_settings
        self.decode_codecs = encoding.decode_codecs
        self.register_outputs({
            "changed_settings": self.changed_settings,
            "decode_codecs": self.decode_codecs,
            "settings": settings,
        })
