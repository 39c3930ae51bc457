"""Jellyfin transcoding settings: what we want (from config and the capability
table), the pure planner that compares it with the server's document, and a
small HTTP client for ``GET``/``POST /System/Configuration/encoding``.

The planner owns only the keys in ``OWNED_KEYS``; every other key of the
EncodingOptions document is posted back exactly as the server returned it.
Field names: jellyfin/jellyfin MediaBrowser.Model/Configuration/EncodingOptions.cs
(PascalCase, as the API serialises them). Endpoints: ConfigurationController
(``GET /System/Configuration/{key}``, ``POST /System/Configuration/{key}``,
the latter needs an administrator's key and answers 204).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from components.config import ConfigError, StackConfig
from components.gpu_capabilities import combined_capabilities, generation_issues, jellyfin_config_issues, ordered_codecs

ENCODING_PATH = "/System/Configuration/encoding"

# Jellyfin's EncodingOptions keys this program sets, in plan order.
OWNED_KEYS: tuple[str, ...] = (
    "HardwareAccelerationType",
    "EnableHardwareEncoding",
    "EnableEnhancedNvdecDecoder",
    "HardwareDecodingCodecs",
    "EnableDecodingColorDepth10Hevc",
    "EnableDecodingColorDepth10Vp9",
    "AllowHevcEncoding",
    "AllowAv1Encoding",
)
# Keys every Jellyfin with NVENC support returns; their absence means the
# document is not an EncodingOptions document (wrong URL, proxy page ...).
REQUIRED_KEYS = frozenset({"HardwareAccelerationType", "EnableHardwareEncoding", "HardwareDecodingCodecs"})

_ATTRIBUTES = {
    "HardwareAccelerationType": "hardware_acceleration_type",
    "EnableHardwareEncoding": "enable_hardware_encoding",
    "EnableEnhancedNvdecDecoder": "enable_enhanced_nvdec_decoder",
    "HardwareDecodingCodecs": "hardware_decoding_codecs",
    "EnableDecodingColorDepth10Hevc": "enable_decoding_color_depth_10_hevc",
    "EnableDecodingColorDepth10Vp9": "enable_decoding_color_depth_10_vp9",
    "AllowHevcEncoding": "allow_hevc_encoding",
    "AllowAv1Encoding": "allow_av1_encoding",
}


# Owned keys every wanted state sets (the 10-bit ones are optional).
_NEEDED_SETTINGS = frozenset(OWNED_KEYS) - {"EnableDecodingColorDepth10Hevc", "EnableDecodingColorDepth10Vp9"}


class EncodingDocumentError(ValueError):
    """The server's answer is not a Jellyfin EncodingOptions document."""


# --------------------------------------------------------------------------
# Wanted state
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodingWanted:
    """The values this program wants for the keys it owns. ``None`` for an
    optional key means "not ours: leave the user's value"."""

    enable_hardware_encoding: bool
    enable_enhanced_nvdec_decoder: bool
    hardware_decoding_codecs: tuple[str, ...]
    allow_hevc_encoding: bool
    allow_av1_encoding: bool
    enable_decoding_color_depth_10_hevc: bool | None = None
    enable_decoding_color_depth_10_vp9: bool | None = None
    hardware_acceleration_type: str = "nvenc"
    reasons: Mapping[str, str] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        """Jellyfin key -> wanted value, for the keys owned in this run."""
        values: dict[str, Any] = {}
        for key in OWNED_KEYS:
            value = getattr(self, _ATTRIBUTES[key])
            if value is None:
                continue
            values[key] = list(value) if isinstance(value, tuple) else value
        return values

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], reasons: Mapping[str, str] | None = None) -> EncodingWanted:
        """The inverse of ``settings()`` (the dynamic provider gets plain dicts)."""
        unknown = sorted(set(settings) - set(OWNED_KEYS))
        if unknown:
            raise ValueError(f"not settings this program owns: {', '.join(unknown)}; owned: {', '.join(OWNED_KEYS)}")
        missing = sorted(_NEEDED_SETTINGS - set(settings))
        if missing:
            raise ValueError(f"settings lack {', '.join(missing)}")
        kwargs: dict[str, Any] = {_ATTRIBUTES[key]: value for key, value in settings.items()}
        kwargs["hardware_decoding_codecs"] = tuple(settings["HardwareDecodingCodecs"])
        return cls(reasons=dict(reasons or {}), **kwargs)


def encoding_wanted(cfg: StackConfig) -> EncodingWanted:
    """What Jellyfin's transcoding settings should be for this stack's GPUs.
    Raises ConfigError (naming ``proxmox-talos-gpu:jellyfin.*``) for a codec
    or encoder the GPU cannot do."""
    issues = jellyfin_config_issues(cfg)
    if issues:
        raise ConfigError(issues)
    jellyfin = cfg.jellyfin
    rows, missing = generation_issues(cfg)
    if missing:
        raise ConfigError(missing)
    caps = combined_capabilities(rows)
    gpu = f"{caps.name} GPU"

    if jellyfin.decode_codecs is not None:
        codecs = tuple(ordered_codecs(jellyfin.decode_codecs))
        codecs_reason = "jellyfin.decodeCodecs asks for them (each checked against the capability table)"
    else:
        codecs = tuple(ordered_codecs(caps.decode))
        codecs_reason = f"every codec a {gpu} decodes with NVDEC (NVIDIA NVDEC application note)"
    hevc_encode = "hevc" in caps.encode if jellyfin.allow_hevc_encoding is None else jellyfin.allow_hevc_encoding
    av1_encode = "av1" in caps.encode if jellyfin.allow_av1_encoding is None else jellyfin.allow_av1_encoding

    reasons: dict[str, str] = {
        "HardwareAccelerationType": "NVENC/NVDEC is Jellyfin's hardware acceleration for NVIDIA GPUs",
        "EnableHardwareEncoding": (f"the {gpu} has NVENC ({', '.join(ordered_codecs(caps.encode))})" if caps.encode
                                   else f"the {gpu} has no NVENC: decode in hardware, encode in software"),
        "EnableEnhancedNvdecDecoder": ("jellyfin.enhancedNvdec is true (NVDEC instead of the older CUVID path; Dolby Vision needs it)"
                                       if jellyfin.enhanced_nvdec else "jellyfin.enhancedNvdec is false (older CUVID decoders)"),
        "HardwareDecodingCodecs": codecs_reason,
        "AllowHevcEncoding": _encode_reason("HEVC", hevc_encode, jellyfin.allow_hevc_encoding, "hevc" in caps.encode, gpu, "allowHevcEncoding"),
        "AllowAv1Encoding": _encode_reason("AV1", av1_encode, jellyfin.allow_av1_encoding, "av1" in caps.encode, gpu, "allowAv1Encoding"),
    }
    hevc_10bit: bool | None = None
    if "hevc" in codecs and caps.hevc_10bit_decode:
        hevc_10bit = True
        reasons["EnableDecodingColorDepth10Hevc"] = f"a {gpu} decodes HEVC Main10"
    vp9_10bit: bool | None = None
    if "vp9" in codecs and caps.vp9_10bit_decode:
        vp9_10bit = True
        reasons["EnableDecodingColorDepth10Vp9"] = f"a {gpu} decodes 10-bit VP9"
    return EncodingWanted(
        enable_hardware_encoding=bool(caps.encode),
        enable_enhanced_nvdec_decoder=jellyfin.enhanced_nvdec,
        hardware_decoding_codecs=codecs,
        allow_hevc_encoding=hevc_encode,
        allow_av1_encoding=av1_encode,
        enable_decoding_color_depth_10_hevc=hevc_10bit,
        enable_decoding_color_depth_10_vp9=vp9_10bit,
        reasons=reasons,
    )


def _encode_reason(codec: str, wanted: bool, asked: bool | None, capable: bool, gpu: str, key: str) -> str:
    if asked is not None:
        return f"jellyfin.{key} is {str(asked).lower()}"
    if capable:
        return f"a {gpu}'s NVENC encodes {codec}"
    return f"a {gpu}'s NVENC cannot encode {codec}, so Jellyfin must not try"


# --------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingChange:
    key: str
    before: Any
    after: Any
    reason: str

    def line(self) -> str:
        return f"change {self.key}: {json.dumps(self.before)} -> {json.dumps(self.after)} because {self.reason}"


@dataclass(frozen=True)
class EncodingPlan:
    """Changes with reasons, "nothing to do because ..." lines, and the full
    document to post (the server's own, with only the changes applied)."""

    changes: tuple[SettingChange, ...]
    unchanged: tuple[str, ...]
    document: dict[str, Any]

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def changed_keys(self) -> list[str]:
        return [change.key for change in self.changes]

    def lines(self) -> list[str]:
        return [change.line() for change in self.changes] + list(self.unchanged)


def _same(key: str, current: Any, wanted: Any) -> bool:
    if key == "HardwareDecodingCodecs" and isinstance(current, list) and isinstance(wanted, list):
        # Jellyfin only tests membership, so order is not a difference.
        return sorted(current) == sorted(wanted)
    # Same JSON type too: 1 is not true, "true" is not true.
    return type(current) is type(wanted) and current == wanted


def _check_document(current: Mapping[str, Any]) -> None:
    if not isinstance(current, Mapping):
        raise EncodingDocumentError(f"expected a JSON object of encoding options, got {type(current).__name__}")
    missing = sorted(REQUIRED_KEYS - set(current))
    if missing:
        raise EncodingDocumentError(f"not a Jellyfin EncodingOptions document: no {', '.join(missing)}")


def plan_encoding(current: dict[str, Any], wanted: EncodingWanted) -> EncodingPlan:
    """Compare the server's EncodingOptions with ``wanted``. Only owned keys
    that differ change; a key this Jellyfin does not return (an older
    version) is left out rather than added, so a second run stays a no-op."""
    _check_document(current)
    document = json.loads(json.dumps(current))  # deep copy; foreign keys untouched
    changes: list[SettingChange] = []
    unchanged: list[str] = []
    settings = wanted.settings()
    for key in OWNED_KEYS:
        if key not in settings:
            unchanged.append(f"{key}: nothing to do because it is not owned in this configuration (the user's value {json.dumps(current.get(key))} stays)")
            continue
        value = settings[key]
        reason = wanted.reasons.get(key, "the configuration asks for it")
        if key not in current:
            unchanged.append(f"{key}: nothing to do because this Jellyfin version has no such setting")
            continue
        if _same(key, current[key], value):
            unchanged.append(f"{key}: nothing to do because it is already {json.dumps(current[key])} ({reason})")
            continue
        changes.append(SettingChange(key, current[key], value, reason))
        document[key] = value
    return EncodingPlan(tuple(changes), tuple(unchanged), document)


def plan_restore(current: dict[str, Any], originals: Mapping[str, Any], applied: Mapping[str, Any]) -> EncodingPlan:
    """Undo: put each key this program changed back to its value from before,
    unless someone changed it since (then their value stays)."""
    _check_document(current)
    document = json.loads(json.dumps(current))
    changes: list[SettingChange] = []
    unchanged: list[str] = []
    for key in sorted(originals, key=lambda name: OWNED_KEYS.index(name) if name in OWNED_KEYS else len(OWNED_KEYS)):
        before = originals[key]
        if key not in current:
            unchanged.append(f"{key}: nothing to do because the server no longer has this setting")
        elif _same(key, current[key], before):
            unchanged.append(f"{key}: nothing to do because it is already back to {json.dumps(before)}")
        elif key in applied and not _same(key, current[key], applied[key]):
            unchanged.append(f"{key}: nothing to do because it was changed to {json.dumps(current[key])} after this program set it; that value stays")
        else:
            changes.append(SettingChange(key, current[key], before, "restoring the value it had before this program changed it"))
            document[key] = before
    return EncodingPlan(tuple(changes), tuple(unchanged), document)


# --------------------------------------------------------------------------
# HTTP client
# --------------------------------------------------------------------------


class JellyfinError(RuntimeError):
    """A failed call to Jellyfin. The message names the URL, never the key."""


def auth_header(api_key: str) -> str:
    """Jellyfin's documented scheme: ``Authorization: MediaBrowser Token="..."``
    (values URL-encoded; jellyfin.org/docs developers/api/authorization). The
    deprecated ``X-Emby-Token`` is not sent: two tokens in one request is
    ambiguous."""
    return f'MediaBrowser Client="proxmox-talos-gpu", Token="{urllib.parse.quote(api_key, safe="")}"'


class JellyfinClient:
    """``GET``/``POST /System/Configuration/encoding`` with a timeout. Made
    fresh where it is used (the dynamic provider creates one per call)."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 30.0):
        if not api_key:
            raise JellyfinError(f"no Jellyfin API key for {base_url}: set jellyfinApiKey (pulumi config set --secret) or JELLYFIN_API_KEY")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._api_key = api_key

    @property
    def url(self) -> str:
        return self.base_url + ENCODING_PATH

    def get_encoding(self) -> dict[str, Any]:
        body = self._request("GET", None)
        try:
            document = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise JellyfinError(f"GET {self.url} did not return JSON; is {self.base_url} a Jellyfin server (check jellyfin.url)?") from None
        try:
            _check_document(document)
        except EncodingDocumentError as error:
            raise JellyfinError(f"GET {self.url}: {error}; check jellyfin.url") from None
        return document

    def post_encoding(self, document: Mapping[str, Any]) -> None:
        self._request("POST", json.dumps(document).encode("utf-8"))

    def _scrub(self, text: str) -> str:
        for secret in {self._api_key, urllib.parse.quote(self._api_key, safe="")}:
            text = text.replace(secret, "***")
        return text

    def _request(self, method: str, data: bytes | None) -> bytes:
        headers = {"Authorization": auth_header(self._api_key), "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url, data=data, headers=headers, method=method)
        where = f"{method} {self.url}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (http(s) URL from validated config)
                return response.read()
        except urllib.error.HTTPError as error:
            detail = self._scrub(error.read(300).decode("utf-8", "replace").strip()) if error.fp else ""
            raise JellyfinError(self._http_message(where, error.code, detail)) from None
        except TimeoutError:
            raise JellyfinError(f"{where}: no answer within {self.timeout:g} s (jellyfin.timeoutSeconds); is Jellyfin running and reachable?") from None
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, TimeoutError):
                raise JellyfinError(f"{where}: no answer within {self.timeout:g} s (jellyfin.timeoutSeconds); is Jellyfin running and reachable?") from None
            raise JellyfinError(f"{where}: cannot connect ({self._scrub(str(reason))}); check jellyfin.url and that Jellyfin is running") from None
        except OSError as error:
            raise JellyfinError(f"{where}: {self._scrub(str(error))}") from None

    @staticmethod
    def _http_message(where: str, code: int, detail: str) -> str:
        shown = f": {detail}" if detail else ""
        if code == 401:
            return f"{where}: HTTP 401 Unauthorized: Jellyfin refused the API key; create one under Dashboard > API Keys and set jellyfinApiKey (--secret) or JELLYFIN_API_KEY"
        if code == 403:
            return f"{where}: HTTP 403 Forbidden: the API key is not an administrator's; changing server configuration needs one (Dashboard > API Keys)"
        if code == 404:
            return f"{where}: HTTP 404 Not Found: no Jellyfin configuration endpoint here; check jellyfin.url (include any base URL path)"
        if code >= 500:
            return f"{where}: HTTP {code}: Jellyfin failed to handle the request{shown}; see the Jellyfin server log"
        return f"{where}: HTTP {code}{shown}"
