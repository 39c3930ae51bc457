"""The Jellyfin dynamic provider, run the way the engine runs it: the
serialized ``__provider`` from the mock registration is served by a fresh
``python -m pulumi.dynamic`` process started in the project root, and driven
over gRPC (Check, Diff, Create, Update, Delete) against the local Jellyfin
API server. That catches what only the real engine would otherwise show: a
provider that does not unpickle, captures state, or leaks the key."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pulumi
import pytest
from google.protobuf import struct_pb2
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from components.config import PROJECT
from components.consumers.component import JellyfinTranscoding
from tests.consumers.conftest import API_KEY, homelab_cfg, with_jellyfin
from tests.stand_ins.jellyfin import JELLYFIN_10_11_DOCUMENT, FakeJellyfin
from tools.mockengine import is_secret, reveal, run_program

ROOT = Path(__file__).resolve().parents[2]
ENCODING = "pulumi-python:dynamic/consumers:JellyfinEncoding"
URN = f"urn:pulumi:test::{PROJECT}::{ENCODING}::jellyfin-encoding"


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def _plain(struct: struct_pb2.Struct) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return reveal(MessageToDict(struct))


class EngineSide:
    """A ``python -m pulumi.dynamic`` process and a gRPC stub to it."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "pulumi.dynamic"], cwd=ROOT,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        port = int(self.process.stdout.readline().decode().strip())
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = provider_pb2_grpc.ResourceProviderStub(self.channel)

    def close(self) -> None:
        self.channel.close()
        self.process.kill()
        self.process.wait(timeout=10)
        self.process.stdout.close()
        self.process.stderr.close()

    def check(self, olds: dict, news: dict) -> dict:
        return _plain(self.stub.Check(provider_pb2.CheckRequest(urn=URN, olds=_struct(olds), news=_struct(news))).inputs)

    def diff(self, id_: str, olds: dict, news: dict) -> provider_pb2.DiffResponse:
        return self.stub.Diff(provider_pb2.DiffRequest(id=id_, urn=URN, olds=_struct(olds), news=_struct(news)))

    def create(self, props: dict) -> tuple[str, dict]:
        response = self.stub.Create(provider_pb2.CreateRequest(urn=URN, properties=_struct(props)))
        return response.id, _plain(response.properties)

    def update(self, id_: str, olds: dict, news: dict) -> dict:
        return _plain(self.stub.Update(provider_pb2.UpdateRequest(id=id_, urn=URN, olds=_struct(olds), news=_struct(news))).properties)

    def delete(self, id_: str, props: dict) -> None:
        self.stub.Delete(provider_pb2.DeleteRequest(id=id_, urn=URN, properties=_struct(props)))


@pytest.fixture(scope="module")
def engine():
    side = EngineSide()
    yield side
    side.close()


@pytest.fixture
def server():
    with FakeJellyfin(API_KEY) as fake:
        yield fake


def _registered_inputs(url: str, **jellyfin: Any) -> dict[str, Any]:
    """The dynamic resource's inputs as the engine hands them to this provider:
    the provider's Configure answers acceptSecrets=false, so the engine strips
    the secret wrappers (and puts them back on what the provider returns)."""
    cfg = with_jellyfin(homelab_cfg(), url=url, timeout_seconds=1, **jellyfin)

    def program() -> None:
        JellyfinTranscoding("jellyfin", cfg, api_key=pulumi.Config(PROJECT).require_secret("jellyfinApiKey"))

    reg = run_program(program, {}, secret_keys={"jellyfinApiKey": API_KEY}).one(ENCODING)
    assert is_secret(reg.inputs["api_key"])
    return {key: value for key, value in reveal(reg.inputs).items() if value is not None}


def _methods(server: FakeJellyfin) -> list[str]:
    return [method for method, *_ in server.requests]


def test_provider_blob_holds_no_key_and_unpickles_only_by_reference(server):
    inputs = _registered_inputs(server.url)
    blob = base64.b64decode(inputs["__provider"])
    assert API_KEY.encode() not in blob
    assert b"components.consumers.provider" in blob and b"JellyfinEncodingProvider" in blob


def test_first_up_changes_owned_settings_second_up_changes_nothing(engine, server):
    inputs = _registered_inputs(server.url)

    # preview: Check reads and reports, nothing is written
    checked = engine.check({}, inputs)
    assert [line.split(":")[0] for line in checked["pending_changes"]] == [
        "change HardwareAccelerationType", "change EnableEnhancedNvdecDecoder", "change HardwareDecodingCodecs",
        "change AllowHevcEncoding", "change AllowAv1Encoding"]
    assert _methods(server) == ["GET"]

    id_, outs = engine.create(checked)
    assert _methods(server) == ["GET", "GET", "POST", "GET"], "read, write once, read back to verify"
    assert outs["changed_settings"] == ["AllowAv1Encoding", "AllowHevcEncoding", "EnableEnhancedNvdecDecoder",
                                        "HardwareAccelerationType", "HardwareDecodingCodecs"]
    assert outs["originals"]["HardwareAccelerationType"] == "none"
    assert outs["originals"]["HardwareDecodingCodecs"] == ["h264", "vc1"]
    assert outs["decode_codecs"] == ["h264", "hevc", "mpeg2video", "mpeg4", "vc1", "vp8", "vp9"]
    assert server.document["HardwareAccelerationType"] == "nvenc" and server.document["AllowAv1Encoding"] is False
    for key, value in JELLYFIN_10_11_DOCUMENT.items():
        if key not in outs["originals"]:
            assert server.document[key] == value, f"{key} is not ours and must survive"

    # second `pulumi up`: Check and Diff read; nothing to update, no POST
    requests_before = len(server.requests)
    checked_again = engine.check(checked, inputs)
    assert checked_again["pending_changes"] == []
    diff = engine.diff(id_, outs, checked_again)
    assert diff.changes == provider_pb2.DiffResponse.DIFF_NONE
    assert _methods(server)[requests_before:] == ["GET", "GET"]


def test_drift_is_corrected_and_destroy_restores_the_users_values(engine, server):
    inputs = _registered_inputs(server.url)
    checked = engine.check({}, inputs)
    id_, outs = engine.create(checked)

    # someone switches acceleration off in the dashboard and changes a foreign setting
    server.document["HardwareAccelerationType"] = "none"
    server.document["H264Crf"] = 19
    checked = engine.check(checked, inputs)
    assert checked["pending_changes"] == [
        'change HardwareAccelerationType: "none" -> "nvenc" because NVENC/NVDEC is Jellyfin\'s hardware acceleration for NVIDIA GPUs']
    assert engine.diff(id_, outs, checked).changes == provider_pb2.DiffResponse.DIFF_SOME
    outs = engine.update(id_, outs, checked)
    assert server.document["HardwareAccelerationType"] == "nvenc" and server.document["H264Crf"] == 19
    assert outs["originals"]["HardwareAccelerationType"] == "none", "the user's original, not the drifted value, is kept"

    engine.delete(id_, outs)
    expected = {**JELLYFIN_10_11_DOCUMENT, "H264Crf": 19}
    assert server.document == expected, "destroy puts back every value this program changed, and only those"


def test_narrowing_the_codecs_updates_them_and_hands_back_a_switch_no_longer_owned(engine, server):
    server.document["EnableDecodingColorDepth10Vp9"] = False  # the user's own choice
    checked = engine.check({}, _registered_inputs(server.url))
    id_, outs = engine.create(checked)
    assert server.document["EnableDecodingColorDepth10Vp9"] is True and outs["originals"]["EnableDecodingColorDepth10Vp9"] is False

    narrower = engine.check(checked, _registered_inputs(server.url, decode_codecs=["h264", "hevc"]))
    assert engine.diff(id_, outs, narrower).changes == provider_pb2.DiffResponse.DIFF_SOME
    posts_before = len(server.posts)
    outs = engine.update(id_, outs, narrower)
    assert len(server.posts) == posts_before + 1, "one POST for both changes"
    assert server.document["HardwareDecodingCodecs"] == ["h264", "hevc"]
    # VP9 is not decoded in hardware any more, so its 10-bit switch is not
    # ours: it goes back to the user's value and leaves the bookkeeping.
    assert server.document["EnableDecodingColorDepth10Vp9"] is False
    assert "EnableDecodingColorDepth10Vp9" not in outs["originals"] and "EnableDecodingColorDepth10Vp9" not in outs["applied"]
    assert outs["originals"]["HardwareDecodingCodecs"] == ["h264", "vc1"], "the first original is kept across updates"

    engine.delete(id_, outs)
    assert server.document == {**JELLYFIN_10_11_DOCUMENT, "EnableDecodingColorDepth10Vp9": False}


def test_unreachable_jellyfin_does_not_fail_preview_but_fails_up_clearly(engine, server):
    inputs = _registered_inputs(server.url)
    server.mode = "hang"
    checked = engine.check({}, inputs)
    assert checked["pending_changes"][0].startswith(f"not known: GET {server.url}/System/Configuration/encoding: no answer within 1 s")
    with pytest.raises(grpc.RpcError) as caught:
        engine.create(checked)
    assert "no answer within 1 s (jellyfin.timeoutSeconds)" in caught.value.details()
    assert API_KEY not in caught.value.details()
    assert "POST" not in _methods(server)


def test_rejected_key_fails_up_without_showing_the_key(engine, server):
    checked = engine.check({}, _registered_inputs(server.url))
    server.mode = "401"
    with pytest.raises(grpc.RpcError) as caught:
        engine.create(checked)
    assert "HTTP 401 Unauthorized" in caught.value.details() and API_KEY not in caught.value.details()


def test_server_error_on_destroy_says_what_was_not_restored(engine, server):
    checked = engine.check({}, _registered_inputs(server.url))
    id_, outs = engine.create(checked)
    server.mode = "500"
    with pytest.raises(grpc.RpcError) as caught:
        engine.delete(id_, outs)
    details = caught.value.details()
    assert "HTTP 500" in details and "were not restored (AllowAv1Encoding" in details and "pulumi state delete" in details
    assert API_KEY not in details


@pytest.mark.parametrize(("misbehave", "kept"), [
    (lambda server: server.drop("EnableEnhancedNvdecDecoder"), False),
    (lambda server: server.rewrite("HardwareDecodingCodecs", ["h264", "hevc"]), ["h264", "hevc"]),
])
def test_a_setting_jellyfin_does_not_keep_fails_up_naming_it(engine, server, misbehave, kept):
    """Jellyfin answers 204 to a POST even when it ignores or changes a value:
    the provider reads the document back and fails, naming the setting,
    instead of reporting success and changing it again on every run."""
    checked = engine.check({}, _registered_inputs(server.url))
    misbehave(server)
    with pytest.raises(grpc.RpcError) as caught:
        engine.create(checked)
    details = caught.value.details()
    key = "EnableEnhancedNvdecDecoder" if kept is False else "HardwareDecodingCodecs"
    assert f"was accepted but Jellyfin did not keep: {key}" in details and API_KEY not in details
    assert _methods(server) == ["GET", "GET", "POST", "GET"], "one POST, then the read-back that found it"
    assert server.document[key] == kept

