"""The pure planner: Jellyfin's EncodingOptions document in, changes with
reasons or nothing-to-do lines out, every foreign key untouched."""

from __future__ import annotations

import copy
import json

import pytest

from components.consumers.jellyfin import (
    OWNED_KEYS,
    EncodingDocumentError,
    EncodingWanted,
    encoding_wanted,
    plan_encoding,
    plan_restore,
)
from tests.consumers.conftest import homelab_cfg, with_generation
from tests.stand_ins.jellyfin import JELLYFIN_10_11_DOCUMENT

FRESH = JELLYFIN_10_11_DOCUMENT


def _foreign(document: dict) -> dict:
    return {key: value for key, value in document.items() if key not in OWNED_KEYS}


def test_homelab_wants_nvenc_with_t4_codecs(cfg):
    assert encoding_wanted(cfg).settings() == {
        "HardwareAccelerationType": "nvenc",
        "EnableHardwareEncoding": True,
        "EnableEnhancedNvdecDecoder": True,
        "HardwareDecodingCodecs": ["h264", "hevc", "mpeg2video", "mpeg4", "vc1", "vp8", "vp9"],
        "EnableDecodingColorDepth10Hevc": True,
        "EnableDecodingColorDepth10Vp9": True,
        "AllowHevcEncoding": True,
        "AllowAv1Encoding": False,
    }


def test_configured_codecs_are_used_in_jellyfins_order():
    wanted = encoding_wanted(homelab_cfg(decodeCodecs=["vp9", "h264", "hevc"]))
    assert wanted.settings()["HardwareDecodingCodecs"] == ["h264", "hevc", "vp9"]
    assert "jellyfin.decodeCodecs" in wanted.reasons["HardwareDecodingCodecs"]


def test_fresh_server_changes_exactly_the_owned_settings_that_differ(cfg):
    plan = plan_encoding(copy.deepcopy(FRESH), encoding_wanted(cfg))
    assert plan.changed_keys == ["HardwareAccelerationType", "EnableEnhancedNvdecDecoder", "HardwareDecodingCodecs", "AllowHevcEncoding", "AllowAv1Encoding"]
    by_key = {change.key: change for change in plan.changes}
    assert (by_key["HardwareAccelerationType"].before, by_key["HardwareAccelerationType"].after) == ("none", "nvenc")
    assert (by_key["AllowAv1Encoding"].before, by_key["AllowAv1Encoding"].after) == (True, False)
    assert "cannot encode AV1" in by_key["AllowAv1Encoding"].reason
    assert _foreign(plan.document) == _foreign(FRESH)
    assert json.dumps(_foreign(plan.document)) == json.dumps(_foreign(FRESH)), "foreign keys keep their order and values"


def test_every_owned_key_is_a_change_with_reason_or_a_nothing_to_do_line(cfg):
    plan = plan_encoding(copy.deepcopy(FRESH), encoding_wanted(cfg))
    lines = plan.lines()
    assert len(lines) == len(OWNED_KEYS)
    for key in OWNED_KEYS:
        mine = [line for line in lines if line.startswith(f"change {key}:") or line.startswith(f"{key}: nothing to do because")]
        assert len(mine) == 1, (key, lines)
    assert all(" because " in line for line in lines)


def test_applied_document_plans_nothing(cfg):
    wanted = encoding_wanted(cfg)
    first = plan_encoding(copy.deepcopy(FRESH), wanted)
    second = plan_encoding(first.document, wanted)
    assert not second.changed
    assert second.document == first.document
    assert all("nothing to do because" in line for line in second.lines())


def test_codec_order_is_not_a_difference(cfg):
    wanted = encoding_wanted(cfg)
    document = plan_encoding(copy.deepcopy(FRESH), wanted).document
    document["HardwareDecodingCodecs"] = list(reversed(document["HardwareDecodingCodecs"]))
    assert not plan_encoding(document, wanted).changed


def test_a_truthy_non_boolean_is_a_difference(cfg):
    wanted = encoding_wanted(cfg)
    document = plan_encoding(copy.deepcopy(FRESH), wanted).document
    document["EnableHardwareEncoding"] = 1
    assert plan_encoding(document, wanted).changed_keys == ["EnableHardwareEncoding"]


def test_setting_an_older_jellyfin_lacks_is_not_added():
    document = copy.deepcopy(FRESH)
    del document["EnableEnhancedNvdecDecoder"]
    plan = plan_encoding(document, encoding_wanted(homelab_cfg()))
    assert "EnableEnhancedNvdecDecoder" not in plan.document
    assert "EnableEnhancedNvdecDecoder" not in plan.changed_keys
    assert "EnableEnhancedNvdecDecoder: nothing to do because this Jellyfin version has no such setting" in plan.lines()


def test_a_document_without_encoding_keys_is_refused(cfg):
    with pytest.raises(EncodingDocumentError, match="HardwareAccelerationType"):
        plan_encoding({"ServerName": "jellyfin"}, encoding_wanted(cfg))


def test_ten_bit_settings_are_left_alone_where_the_gpu_generation_cannot_promise_them():
    wanted = encoding_wanted(with_generation(homelab_cfg(), "pascal", "gp10x"))
    assert "EnableDecodingColorDepth10Vp9" not in wanted.settings()
    assert wanted.settings()["EnableDecodingColorDepth10Hevc"] is True
    document = copy.deepcopy(FRESH)
    document["EnableDecodingColorDepth10Vp9"] = False
    plan = plan_encoding(document, wanted)
    assert plan.document["EnableDecodingColorDepth10Vp9"] is False
    assert any(line.startswith("EnableDecodingColorDepth10Vp9: nothing to do because it is not owned") for line in plan.lines())


def test_gpu_without_nvenc_turns_hardware_encoding_off():
    wanted = encoding_wanted(with_generation(homelab_cfg(), "hopper"))
    assert wanted.settings()["EnableHardwareEncoding"] is False
    assert wanted.settings()["AllowHevcEncoding"] is False
    assert "no NVENC" in wanted.reasons["EnableHardwareEncoding"]


def test_restore_puts_back_what_was_changed(cfg):
    applied_plan = plan_encoding(copy.deepcopy(FRESH), encoding_wanted(cfg))
    originals = {change.key: change.before for change in applied_plan.changes}
    applied = {change.key: change.after for change in applied_plan.changes}
    restore = plan_restore(applied_plan.document, originals, applied)
    assert restore.document == FRESH
    assert not plan_restore(restore.document, originals, applied).changed


def test_restore_keeps_a_value_the_user_changed_afterwards(cfg):
    applied_plan = plan_encoding(copy.deepcopy(FRESH), encoding_wanted(cfg))
    originals = {change.key: change.before for change in applied_plan.changes}
    applied = {change.key: change.after for change in applied_plan.changes}
    document = copy.deepcopy(applied_plan.document)
    document["HardwareDecodingCodecs"] = ["h264"]
    restore = plan_restore(document, originals, applied)
    assert restore.document["HardwareDecodingCodecs"] == ["h264"]
    assert restore.document["HardwareAccelerationType"] == "none"
    assert any("HardwareDecodingCodecs: nothing to do because it was changed" in line for line in restore.lines())


def test_wanted_survives_the_round_trip_through_plain_settings(cfg):
    wanted = encoding_wanted(cfg)
    again = EncodingWanted.from_settings(wanted.settings(), wanted.reasons)
    assert again == wanted


def test_settings_outside_the_owned_keys_are_refused():
    with pytest.raises(ValueError, match="EncoderAppPath"):
        EncodingWanted.from_settings({"EncoderAppPath": "/tmp/evil"})
