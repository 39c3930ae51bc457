"""A local stand-in for Jellyfin's configuration API, for tests.

Serves ``GET``/``POST /System/Configuration/encoding`` on 127.0.0.1 (random
port, own thread) the way Jellyfin's ConfigurationController does: the
document is an EncodingOptions object in PascalCase, the request needs the API
key (``Authorization: MediaBrowser Token="..."``, or the deprecated
``X-Emby-Token``), a POST answers 204 and replaces the stored options with the body: unknown
keys are dropped (System.Text.Json ignores properties the class lacks) and
keys left out get the constructor's defaults.
``mode`` makes it answer 401, 500, hang (for timeouts) or cut (the body
ends before its Content-Length: a connection dropped mid-reply).
``drop(key)`` makes it not keep a posted key (an older Jellyfin whose
EncodingOptions lacks the property: the value is ignored, the old one stays);
``rewrite(key, value)`` makes it store ``value`` whatever was posted (a
server, or a plugin, that normalises the setting). Both still answer 204, as
Jellyfin does.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATH = "/System/Configuration/encoding"

# Jellyfin 10.11's EncodingOptions defaults (MediaBrowser.Model/Configuration/
# EncodingOptions.cs) plus values a user set by hand in the dashboard:
# thread count, temp path, CRF, tone-mapping, a fallback font, throttling,
# and software-only transcoding with Jellyfin's default decode list.
JELLYFIN_10_11_DOCUMENT: dict[str, Any] = {
    "EncodingThreadCount": 6,
    "TranscodingTempPath": "/cache/transcodes",
    "FallbackFontPath": "/config/fonts",
    "EnableFallbackFont": True,
    "EnableAudioVbr": False,
    "DownMixAudioBoost": 2.5,
    "DownMixStereoAlgorithm": "Dave750",
    "MaxMuxingQueueSize": 4096,
    "EnableThrottling": True,
    "ThrottleDelaySeconds": 240,
    "EnableSegmentDeletion": True,
    "SegmentKeepSeconds": 720,
    "HardwareAccelerationType": "none",
    "EncoderAppPath": None,
    "EncoderAppPathDisplay": "/usr/lib/jellyfin-ffmpeg/ffmpeg",
    "VaapiDevice": "/dev/dri/renderD128",
    "QsvDevice": "",
    "EnableTonemapping": True,
    "EnableVppTonemapping": False,
    "EnableVideoToolboxTonemapping": False,
    "TonemappingAlgorithm": "bt2390",
    "TonemappingMode": "auto",
    "TonemappingRange": "auto",
    "TonemappingDesat": 0,
    "TonemappingPeak": 100,
    "TonemappingParam": 0,
    "VppTonemappingBrightness": 16,
    "VppTonemappingContrast": 1,
    "H264Crf": 21,
    "H265Crf": 26,
    "EncoderPreset": "medium",
    "DeinterlaceDoubleRate": False,
    "DeinterlaceMethod": "bwdif",
    "EnableDecodingColorDepth10Hevc": True,
    "EnableDecodingColorDepth10Vp9": True,
    "EnableDecodingColorDepth10HevcRext": False,
    "EnableDecodingColorDepth12HevcRext": False,
    "EnableEnhancedNvdecDecoder": False,
    "PreferSystemNativeHwDecoder": True,
    "EnableIntelLowPowerH264HwEncoder": False,
    "EnableIntelLowPowerHevcHwEncoder": False,
    "EnableHardwareEncoding": True,
    "AllowHevcEncoding": False,
    "AllowAv1Encoding": True,
    "EnableSubtitleExtraction": True,
    "SubtitleExtractionTimeoutMinutes": 30,
    "HardwareDecodingCodecs": ["h264", "vc1"],
    "AllowOnDemandMetadataBasedKeyframeExtractionForExtensions": ["mkv"],
    "TranscodingLockPoolSize": 20,
}

# What a fresh EncodingOptions holds (its constructor): a POST that leaves a
# key out resets it to this, as deserialising into a new object does.
ENCODING_OPTIONS_DEFAULTS: dict[str, Any] = {
    **{key: None for key in JELLYFIN_10_11_DOCUMENT},
    "EncodingThreadCount": -1, "EnableFallbackFont": False, "EnableAudioVbr": False, "DownMixAudioBoost": 2,
    "DownMixStereoAlgorithm": "None", "MaxMuxingQueueSize": 2048, "EnableThrottling": False, "ThrottleDelaySeconds": 180,
    "EnableSegmentDeletion": False, "SegmentKeepSeconds": 720, "HardwareAccelerationType": "none",
    "VaapiDevice": "/dev/dri/renderD128", "QsvDevice": "", "EnableTonemapping": False, "EnableVppTonemapping": False,
    "EnableVideoToolboxTonemapping": False, "TonemappingAlgorithm": "bt2390", "TonemappingMode": "auto", "TonemappingRange": "auto",
    "TonemappingDesat": 0, "TonemappingPeak": 100, "TonemappingParam": 0, "VppTonemappingBrightness": 16, "VppTonemappingContrast": 1,
    "H264Crf": 23, "H265Crf": 28, "DeinterlaceDoubleRate": False, "DeinterlaceMethod": "yadif",
    "EnableDecodingColorDepth10Hevc": True, "EnableDecodingColorDepth10Vp9": True, "EnableDecodingColorDepth10HevcRext": False,
    "EnableDecodingColorDepth12HevcRext": False, "EnableEnhancedNvdecDecoder": True, "PreferSystemNativeHwDecoder": True,
    "EnableIntelLowPowerH264HwEncoder": False, "EnableIntelLowPowerHevcHwEncoder": False, "EnableHardwareEncoding": True,
    "AllowHevcEncoding": False, "AllowAv1Encoding": False, "EnableSubtitleExtraction": True, "SubtitleExtractionTimeoutMinutes": 30,
    "AllowOnDemandMetadataBasedKeyframeExtractionForExtensions": ["mkv"], "HardwareDecodingCodecs": ["h264", "vc1"],
    "TranscodingLockPoolSize": 20,
}

_TOKEN = re.compile(r'(?:^|[\s,])Token="([^"]*)"')


class FakeJellyfin:
    """``with FakeJellyfin("key") as server:`` ... ``server.url``."""

    def __init__(self, api_key: str, document: dict[str, Any] | None = None, admin: bool = True):
        self.api_key = api_key
        self.admin = admin
        self.document = copy.deepcopy(document if document is not None else JELLYFIN_10_11_DOCUMENT)
        self.mode = "ok"  # "ok" | "401" | "500" | "hang" | "cut"
        self.dropped: set[str] = set()
        self.rewritten: dict[str, Any] = {}
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.release = threading.Event()  # ends a hang
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def posts(self) -> list[dict[str, Any]]:
        return [json.loads(body) for method, _path, _headers, body in self.requests if method == "POST"]

    def drop(self, key: str) -> None:
        """Keep the old value of ``key`` whatever a POST says."""
        self.dropped.add(key)

    def rewrite(self, key: str, value: Any) -> None:
        """Store ``value`` for ``key`` whatever a POST says."""
        self.rewritten[key] = value

    def __enter__(self) -> FakeJellyfin:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def _authorised(self, headers: Any) -> bool:
        match = _TOKEN.search(headers.get("Authorization", "") or headers.get("X-Emby-Authorization", ""))
        token = urllib.parse.unquote(match.group(1)) if match else headers.get("X-Emby-Token", "")
        return bool(token) and token == self.api_key

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:  # keep test output quiet
                pass

            def _reply(self, code: int, body: Any = None, content_type: str = "application/json") -> None:
                data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
                self.send_response(code)
                if data:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _common(self) -> bool:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with fake.lock:
                    fake.requests.append((self.command, self.path, dict(self.headers), body))
                self._body = body
                if fake.mode == "hang":
                    fake.release.wait(30)
                    return False
                if fake.mode == "500":
                    self._reply(500, b"Error processing request.", "text/plain")
                    return False
                if self.path.split("?")[0] != PATH:
                    self._reply(404)
                    return False
                if fake.mode == "401" or not fake._authorised(self.headers):
                    self._reply(401)
                    return False
                return True

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if not self._common():
                    return
                with fake.lock:
                    data = json.dumps(fake.document).encode()
                if fake.mode == "cut":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                    return
                self._reply(200, data)

            def do_POST(self) -> None:  # noqa: N802
                if not self._common():
                    return
                if not fake.admin:
                    self._reply(403)
                    return
                try:
                    posted = json.loads(self._body)
                except ValueError:
                    self._reply(400, {"title": "One or more validation errors occurred."})
                    return
                if not isinstance(posted, dict):
                    self._reply(400, {"title": "One or more validation errors occurred."})
                    return
                with fake.lock:
                    # Properties the class lacks are ignored; the ones left out
                    # get the constructor's defaults.
                    stored = {key: copy.deepcopy(posted.get(key, ENCODING_OPTIONS_DEFAULTS[key])) for key in fake.document}
                    stored.update({key: fake.document[key] for key in fake.dropped if key in fake.document})
                    stored.update({key: copy.deepcopy(value) for key, value in fake.rewritten.items() if key in fake.document})
                    fake.document = stored
                self._reply(204)

        return Handler
