"""The sections of what uses the GPU and the check that it can: ``jellyfin``
(its NVENC/NVDEC settings, checked against the capability table in
components/gpu_capabilities.py) and ``readiness``."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from components.config.values import DnsLabel, HttpUrl, Section


class JellyfinConfig(Section):
    enabled: bool = False
    url: HttpUrl | None = None
    namespace: DnsLabel = "media"
    pod_selector: str = "app.kubernetes.io/name=jellyfin"
    decode_codecs: list[str] | None = None
    enhanced_nvdec: bool = True
    timeout_seconds: Annotated[int, Field(ge=1, le=300)] = 30
    # Jellyfin's AllowHevcEncoding / AllowAv1Encoding. None: on exactly when
    # the GPU's NVENC can encode the codec (capability table); true where it
    # cannot is refused (components.gpu_capabilities).
    allow_hevc_encoding: bool | None = None
    allow_av1_encoding: bool | None = None


class ReadinessConfig(Section):
    enabled: bool = True
    timeout_seconds: Annotated[int, Field(ge=30, le=7200)] = 900
