"""The Jellyfin dynamic provider, run the way the engine runs it: the
serialized ``__provider`` from the mock registration is served by a fresh
``python -m pulumi.dynamic`` process started in the project root, and driven
over gRPC (Check, Diff, Create, Update, Delete) against the local Jellyfin
API server. That catches what only the real engine would otherwise show: a
provider that does not unpickle, captures state, or leaks the key."""

from __future__ import annotations

import base64

import grpc
import pytest
from pulumi.runtime.proto import provider_pb2

from tests.consumers.conftest import API_KEY
from tests.consumers.engine_side import registered_inputs
from tests.stand_ins.jellyfin import JELLYFIN_10_11_DOCUMENT, FakeJellyfin


def _methods(server: FakeJellyfin) -> list[str]:
    return [method for method, *_ in server.requests]


def test_provider_blob_holds_no_key_and_unpickles_only_by_reference(server):
    inputs = registered_inputs(server.url)
    blob = base64.b64decode(inputs["__provider"])
    assert API_KEY.encode() not in blob
    assert b"components.consumers.provider" in blob and b"JellyfinEncodingProvider" in blob


def test_first_up_changes_owned_settings_second_up_changes_nothing(engine, server):
    inputs = registered_inputs(server.url)

    # preview: Check reads and reports, nothing is written
    checked = engine.check({}, inputs)
    assert [line.split(":")[0] for line in checked["pendingChanges"]] == [
        "change HardwareAccelerationType", "change EnableEnhancedNvdecDecoder", "change HardwareDecodingCodecs",
        "change AllowHevcEncoding", "change AllowAv1Encoding"]
    assert _methods(server) == ["GET"]

    id_, outs = engine.create(checked)
    assert _methods(server) == ["GET", "GET", "POST", "GET"], "read, write once, read back to verify"
    assert outs["changedSettings"] == ["AllowAv1Encoding", "AllowHevcEncoding", "EnableEnhancedNvdecDecoder",
                                        "HardwareAccelerationType", "HardwareDecodingCodecs"]
    assert outs["originals"]["HardwareAccelerationType"] == "none"
    assert outs["originals"]["HardwareDecodingCodecs"] == ["h264", "vc1"]
    assert outs["decodeCodecs"] == ["h264", "hevc", "mpeg2video", "mpeg4", "vc1", "vp8", "vp9"]
    assert server.document["HardwareAccelerationType"] == "nvenc" and server.document["AllowAv1Encoding"] is False
    for key, value in JELLYFIN_10_11_DOCUMENT.items():
        if key not in outs["originals"]:
            assert server.document[key] == value, f"{key} is not ours and must survive"

    # second `pulumi up`: Check and Diff read; nothing to update, no POST
    requests_before = len(server.requests)
    checked_again = engine.check(checked, inputs)
    assert checked_again["pendingChanges"] == []
    diff = engine.diff(id_, outs, checked_again)
    assert diff.changes == provider_pb2.DiffResponse.DIFF_NONE
    assert _methods(server)[requests_before:] == ["GET", "GET"]


def test_drift_is_corrected_and_destroy_restores_the_users_values(engine, server):
    inputs = registered_inputs(server.url)
    checked = engine.check({}, inputs)
    id_, outs = engine.create(checked)

    # someone switches acceleration off in the dashboard and changes a foreign setting
    server.document["HardwareAccelerationType"] = "none"
    server.document["H264Crf"] = 19
    checked = engine.check(checked, inputs)
    assert checked["pendingChanges"] == [
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
    checked = engine.check({}, registered_inputs(server.url))
    id_, outs = engine.create(checked)
    assert server.document["EnableDecodingColorDepth10Vp9"] is True and outs["originals"]["EnableDecodingColorDepth10Vp9"] is False

    narrower = engine.check(checked, registered_inputs(server.url, decode_codecs=["h264", "hevc"]))
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
    inputs = registered_inputs(server.url)
    server.mode = "hang"
    checked = engine.check({}, inputs)
    assert checked["pendingChanges"][0].startswith(f"not known: GET {server.url}/System/Configuration/encoding: no answer within 1 s")
    with pytest.raises(grpc.RpcError) as caught:
        engine.create(checked)
    assert "no answer within 1 s (jellyfin.timeoutSeconds)" in caught.value.details()
    assert API_KEY not in caught.value.details()
    assert "POST" not in _methods(server)


def test_rejected_key_fails_up_without_showing_the_key(engine, server):
    checked = engine.check({}, registered_inputs(server.url))
    server.mode = "401"
    with pytest.raises(grpc.RpcError) as caught:
        engine.create(checked)
    assert "HTTP 401 Unauthorized" in caught.value.details() and API_KEY not in caught.value.details()


def test_server_error_on_destroy_says_what_was_not_restored(engine, server):
    checked = engine.check({}, registered_inputs(server.url))
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
    checked = engine.check({}, registered_inputs(server.url))
    misbehave(server)
    with pytest.raises(grpc.RpcError) as caught:
        engine.create(checked)
    details = caught.value.details()
    key = "EnableEnhancedNvdecDecoder" if kept is False else "HardwareDecodingCodecs"
    assert f"was accepted but Jellyfin did not keep: {key}" in details and API_KEY not in details
    assert _methods(server) == ["GET", "GET", "POST", "GET"], "one POST, then the read-back that found it"
    assert server.document[key] == kept

