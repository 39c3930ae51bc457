"""State written by the Jellyfin encoding provider before its keys took
camelCase: it reads as the same spec, the next `pulumi preview` shows one
update that changes no setting, and update and delete work from it, against
the fake Jellyfin, called directly and the way the engine calls it."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime.proto import provider_pb2

from components.consumers import provider as provider_module
from components.consumers.encoding_spec import OLD_KEYS, EncodingSpec, canonical, encoding_spec
from components.consumers.provider import JellyfinEncodingProvider
from tests.consumers.conftest import API_KEY, homelab_cfg
from tests.consumers.engine_side import registered_inputs
from tests.stand_ins.jellyfin import JELLYFIN_10_11_DOCUMENT

TIMEOUT = 5  # jellyfin.timeoutSeconds of the stack below (the homelab's 30 is also the default)

# What the snake_case provider stored for the homelab stack with Jellyfin on,
# a T4 and the fake Jellyfin's document (components/consumers/encoding_spec.py
# EncodingSpec.to_dict() of that version, the component's api_key, then what
# check and create added), pinned; the fake's URL and TIMEOUT go in below.
_OLD_SPEC: dict[str, Any] = {
    "url": "http://jellyfin.media.svc.cluster.local:8096",
    "timeout_seconds": 30,
    "settings": {
        "HardwareAccelerationType": "nvenc", "EnableHardwareEncoding": True, "EnableEnhancedNvdecDecoder": True,
        "HardwareDecodingCodecs": ["h264", "hevc", "mpeg2video", "mpeg4", "vc1", "vp8", "vp9"],
        "EnableDecodingColorDepth10Hevc": True, "EnableDecodingColorDepth10Vp9": True,
        "AllowHevcEncoding": True, "AllowAv1Encoding": False,
    },
    "reasons": {
        "HardwareAccelerationType": "NVENC/NVDEC is Jellyfin's hardware acceleration for NVIDIA GPUs",
        "EnableHardwareEncoding": "the turing GPU has NVENC (h264, hevc)",
        "EnableEnhancedNvdecDecoder": "jellyfin.enhancedNvdec is true (NVDEC instead of the older CUVID path; Dolby Vision needs it)",
        "HardwareDecodingCodecs": "every codec a turing GPU decodes with NVDEC (NVIDIA NVDEC application note)",
        "AllowHevcEncoding": "a turing GPU's NVENC encodes HEVC",
        "AllowAv1Encoding": "a turing GPU's NVENC cannot encode AV1, so Jellyfin must not try",
        "EnableDecodingColorDepth10Hevc": "a turing GPU decodes HEVC Main10",
        "EnableDecodingColorDepth10Vp9": "a turing GPU decodes 10-bit VP9",
    },
    "decode_codecs": ["h264", "hevc", "mpeg2video", "mpeg4", "vc1", "vp8", "vp9"],
    "api_key": API_KEY,
}
_OLD_LINES = [
    'change HardwareAccelerationType: "none" -> "nvenc" because NVENC/NVDEC is Jellyfin\'s hardware acceleration for NVIDIA GPUs',
    "change EnableEnhancedNvdecDecoder: false -> true because jellyfin.enhancedNvdec is true (NVDEC instead of the older CUVID path; Dolby Vision needs it)",
    'change HardwareDecodingCodecs: ["h264", "vc1"] -> ["h264", "hevc", "mpeg2video", "mpeg4", "vc1", "vp8", "vp9"] because every codec a turing GPU decodes with NVDEC (NVIDIA NVDEC application note)',
    "change AllowHevcEncoding: false -> true because a turing GPU's NVENC encodes HEVC",
    "change AllowAv1Encoding: true -> false because a turing GPU's NVENC cannot encode AV1, so Jellyfin must not try",
]
OLD_INPUTS: dict[str, Any] = {**_OLD_SPEC, "pending_changes": _OLD_LINES}
OLD_OUTPUTS: dict[str, Any] = {
    **_OLD_SPEC,
    "originals": {"HardwareAccelerationType": "none", "EnableEnhancedNvdecDecoder": False, "HardwareDecodingCodecs": ["h264", "vc1"],
                  "AllowHevcEncoding": False, "AllowAv1Encoding": True},
    "applied": {"HardwareAccelerationType": "nvenc", "EnableEnhancedNvdecDecoder": True,
                "HardwareDecodingCodecs": ["h264", "hevc", "mpeg2video", "mpeg4", "vc1", "vp8", "vp9"],
                "AllowHevcEncoding": True, "AllowAv1Encoding": False},
    "changed_settings": ["AllowAv1Encoding", "AllowHevcEncoding", "EnableEnhancedNvdecDecoder", "HardwareAccelerationType",
                         "HardwareDecodingCodecs"],
    "last_changes": _OLD_LINES,
}
# A provider blob as the state of that time holds it (tests/data/old_layout/README.md).
OLD_BLOB = (Path(__file__).resolve().parents[1] / "data" / "old_layout" / "consumers.provider.JellyfinEncodingProvider.b64").read_text().strip()

SNAKE_CASE = set(OLD_KEYS.values())


def _old(url: str, stored: dict[str, Any]) -> dict[str, Any]:
    return {**copy.deepcopy(stored), "url": url, "timeout_seconds": TIMEOUT}


def _new(url: str, **jellyfin: Any) -> dict[str, Any]:
    """What the component registers today for the same stack (without the provider blob)."""
    inputs = registered_inputs(url, timeout_seconds=TIMEOUT, **jellyfin)
    inputs.pop("__provider")
    return inputs


@pytest.fixture
def jellyfin(server):
    """The fake Jellyfin as the old provider left it: its document with the applied values."""
    server.document.update(copy.deepcopy(OLD_OUTPUTS["applied"]))
    return server


def test_the_old_keys_and_the_new_ones_read_as_the_same_spec():
    spec = EncodingSpec.from_dict(OLD_INPUTS)
    assert spec == encoding_spec(homelab_cfg()), "the pinned inputs are today's homelab config in the old spelling"
    assert EncodingSpec.from_dict(OLD_OUTPUTS) == spec and EncodingSpec.from_dict(spec.to_dict()) == spec
    assert "timeoutSeconds" in spec.to_dict() and "decodeCodecs" in spec.to_dict() and not SNAKE_CASE & set(spec.to_dict())
    assert EncodingSpec.from_dict({**OLD_INPUTS, "timeout_seconds": 90}).timeout_seconds == 90.0
    new = canonical(OLD_OUTPUTS)
    assert (new["apiKey"], new["timeoutSeconds"], new["decodeCodecs"], new["changedSettings"], new["lastChanges"]) == \
        (API_KEY, 30, _OLD_SPEC["decode_codecs"], OLD_OUTPUTS["changed_settings"], _OLD_LINES)
    assert canonical(OLD_INPUTS)["pendingChanges"] == _OLD_LINES and not SNAKE_CASE & set(new)


def test_old_state_previews_one_update_that_only_renames_and_a_real_change_still_shows(jellyfin, monkeypatch):
    said: list[str] = []
    monkeypatch.setattr(provider_module, "_say", said.append)
    provider = JellyfinEncodingProvider()
    stored, new = _old(jellyfin.url, OLD_OUTPUTS), _new(jellyfin.url)
    assert canonical(new) == {key: value for key, value in canonical(_old(jellyfin.url, OLD_INPUTS)).items() if key != "pendingChanges"}

    checked = provider.check(_old(jellyfin.url, OLD_INPUTS), new)
    assert checked.failures == [] and checked.inputs["pendingChanges"] == [], "no setting would change"
    assert not SNAKE_CASE & set(checked.inputs)
    diff = provider.diff("encoding@old", stored, checked.inputs)
    assert (diff.changes, diff.replaces) == (True, []), "the old output names must be rewritten, or the engine keeps them"
    assert said == ["the state holds api_key, changed_settings, decode_codecs, last_changes, timeout_seconds as an earlier "
                    "version named them; no setting changes, this update only writes the outputs under their camelCase names"]
    assert provider.diff("encoding@old", canonical(stored), checked.inputs).changes is False, "only the names make it an update"

    narrower = provider.check(stored, _new(jellyfin.url, decode_codecs=["h264", "hevc"])).inputs
    assert [line.split(":")[0] for line in narrower["pendingChanges"]] == ["change HardwareDecodingCodecs"]
    assert provider.diff("encoding@old", stored, narrower).changes is True
    assert provider.diff("encoding@old", stored, {**checked.inputs, "url": "http://other:8096"}).replaces == ["url"]
    assert {method for method, *_ in jellyfin.requests} == {"GET"}, "preview only reads"


def test_update_from_old_state_posts_nothing_and_leaves_camel_case_outputs_only(jellyfin):
    provider = JellyfinEncodingProvider()
    document = copy.deepcopy(jellyfin.document)
    checked = provider.check(_old(jellyfin.url, OLD_INPUTS), _new(jellyfin.url)).inputs

    outs = provider.update("encoding@old", _old(jellyfin.url, OLD_OUTPUTS), checked).outs
    assert jellyfin.posts == [] and jellyfin.document == document
    assert not SNAKE_CASE & set(outs)
    assert (outs["apiKey"], outs["timeoutSeconds"], outs["decodeCodecs"]) == (API_KEY, TIMEOUT, _OLD_SPEC["decode_codecs"])
    assert outs["originals"] == OLD_OUTPUTS["originals"] and outs["applied"] == OLD_OUTPUTS["applied"]
    assert outs["changedSettings"] == OLD_OUTPUTS["changed_settings"]
    assert outs["lastChanges"] == ["nothing to do: every owned setting already had its wanted value"]
    assert "pendingChanges" not in outs
    assert provider.diff("encoding@old", outs, provider.check(outs, _new(jellyfin.url)).inputs).changes is False


def test_update_from_old_state_corrects_drift_and_keeps_the_users_originals(jellyfin):
    jellyfin.document["HardwareAccelerationType"] = "none"  # switched off in the dashboard since
    provider = JellyfinEncodingProvider()
    checked = provider.check(_old(jellyfin.url, OLD_INPUTS), _new(jellyfin.url)).inputs
    outs = provider.update("encoding@old", _old(jellyfin.url, OLD_OUTPUTS), checked).outs
    assert len(jellyfin.posts) == 1 and jellyfin.document["HardwareAccelerationType"] == "nvenc"
    assert outs["originals"] == OLD_OUTPUTS["originals"] and not SNAKE_CASE & set(outs)


def test_delete_from_old_state_restores_the_originals(jellyfin):
    JellyfinEncodingProvider().delete("encoding@old", _old(jellyfin.url, OLD_OUTPUTS))
    assert jellyfin.document == JELLYFIN_10_11_DOCUMENT


def test_old_state_through_the_engine_updates_without_a_post_then_deletes(engine, jellyfin):
    """The state's provider blob from the earlier layout, the old outputs as
    the engine hands them over (secrets stripped: the provider does not
    accept them), over gRPC."""
    assert b"JellyfinEncodingProvider" in base64.b64decode(OLD_BLOB)
    stored = {**_old(jellyfin.url, OLD_OUTPUTS), "__provider": OLD_BLOB}
    inputs = registered_inputs(jellyfin.url, timeout_seconds=TIMEOUT)

    checked = engine.check({**_old(jellyfin.url, OLD_INPUTS), "__provider": OLD_BLOB}, inputs)
    assert checked["pendingChanges"] == []
    assert engine.diff("encoding@old", stored, checked).changes == provider_pb2.DiffResponse.DIFF_SOME
    outs = engine.update("encoding@old", stored, checked)
    assert jellyfin.posts == [] and not SNAKE_CASE & set(outs)
    assert outs["apiKey"] == API_KEY and outs["changedSettings"] == OLD_OUTPUTS["changed_settings"]
    assert engine.diff("encoding@old", outs, engine.check(checked, inputs)).changes == provider_pb2.DiffResponse.DIFF_NONE

    engine.delete("encoding@old", stored)  # a destroy straight from the old state
    assert jellyfin.document == JELLYFIN_10_11_DOCUMENT
