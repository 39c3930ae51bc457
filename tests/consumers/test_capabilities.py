"""The GPU-generation capability table and the jellyfin.* checks built on it."""

from __future__ import annotations

import typing

import pytest

from components.config import ConfigError, GpuConfig
from components.consumers.capabilities import (
    CAPABILITIES,
    GENERATIONS,
    JELLYFIN_CODECS,
    GenerationCaps,
    chip_capabilities,
    combined_capabilities,
    decode_codecs_for,
    encode_codecs_for,
    generation_issues,
    gpu_capabilities,
    jellyfin_config_issues,
)
from components.consumers.jellyfin import encoding_wanted
from tests.consumers.conftest import homelab_cfg, with_generation, with_jellyfin


def test_turing_decodes_h264_hevc_vp9_and_not_av1():
    codecs = decode_codecs_for("turing")
    assert {"h264", "hevc", "vp9"} <= set(codecs)
    assert "av1" not in codecs


def test_turing_encodes_h264_and_hevc_only():
    assert encode_codecs_for("turing") == ["h264", "hevc"]


def test_decode_codecs_use_jellyfin_names_in_dashboard_order():
    for generation in GENERATIONS:
        codecs = decode_codecs_for(generation)
        assert codecs == [codec for codec in JELLYFIN_CODECS if codec in codecs], generation
        assert set(codecs) <= set(JELLYFIN_CODECS), generation


@pytest.mark.parametrize("generation, decodes_av1, encodes_av1", [
    ("pascal", False, False), ("volta", False, False), ("turing", False, False),
    ("ampere", False, False),  # GA100 cannot; GA10x can, so only on request
    ("ada", True, True), ("hopper", False, False), ("blackwell", True, True),
])
def test_av1_only_where_nvidia_documents_it(generation, decodes_av1, encodes_av1):
    assert ("av1" in decode_codecs_for(generation)) is decodes_av1
    assert ("av1" in encode_codecs_for(generation)) is encodes_av1


def test_hopper_has_no_nvenc():
    assert encode_codecs_for("hopper") == []


def test_every_generation_the_config_accepts_has_a_row():
    accepted = set(typing.get_args(typing.get_args(GpuConfig.model_fields["generation"].annotation)[0]))
    assert accepted == set(CAPABILITIES) == set(GENERATIONS)


def test_unknown_generation_names_the_known_ones():
    with pytest.raises(ValueError, match="known: pascal, volta, turing"):
        decode_codecs_for("kepler")


def test_mixed_gpus_get_only_what_both_can_do():
    caps = combined_capabilities(["turing", "ada"])
    assert "av1" not in caps.decode and "av1" not in caps.allowed_decode()
    assert caps.encode == {"h264", "hevc"}


def test_av1_decoding_on_a_t4_is_refused_naming_key_value_and_allowed():
    cfg = with_jellyfin(homelab_cfg(), decode_codecs=["h264", "hevc", "av1"])
    issues = jellyfin_config_issues(cfg)
    assert len(issues) == 1
    text = str(issues[0])
    assert text.startswith("proxmox-talos-gpu:jellyfin.decodeCodecs = ['h264', 'hevc', 'av1']"), text
    assert "'av1' cannot be decoded in hardware by a turing GPU (gpus[0])" in text
    assert "allowed for this GPU: h264, hevc, mpeg2video, mpeg4, vc1, vp8, vp9" in text


def test_planning_refuses_av1_on_a_t4_before_anything_is_touched():
    with pytest.raises(ConfigError, match=r"proxmox-talos-gpu:jellyfin\.decodeCodecs"):
        encoding_wanted(with_jellyfin(homelab_cfg(), decode_codecs=["av1"]))


def test_av1_encoding_on_a_t4_is_refused():
    issues = jellyfin_config_issues(with_jellyfin(homelab_cfg(), allow_av1_encoding=True))
    assert [issue.key for issue in issues] == ["jellyfin.allowAv1Encoding"]
    assert "cannot encode AV1" in str(issues[0]) and "it encodes h264, hevc" in str(issues[0])


def test_hevc_encoding_on_hopper_is_refused():
    cfg = with_generation(with_jellyfin(homelab_cfg(), allow_hevc_encoding=True), "hopper")
    issues = jellyfin_config_issues(cfg)
    assert [issue.key for issue in issues] == ["jellyfin.allowHevcEncoding"]
    assert "nothing (no NVENC)" in str(issues[0])


def test_other_spellings_get_jellyfins_name_suggested():
    issues = jellyfin_config_issues(with_jellyfin(homelab_cfg(), decode_codecs=["h265"]))
    assert [issue.key for issue in issues] == ["jellyfin.decodeCodecs[0]"]
    assert "Jellyfin calls this codec 'hevc'" in str(issues[0])


def test_unknown_codec_and_duplicates_are_refused():
    issues = jellyfin_config_issues(with_jellyfin(homelab_cfg(), decode_codecs=["h264", "h264", "prores"]))
    assert [issue.key for issue in issues] == ["jellyfin.decodeCodecs[1]", "jellyfin.decodeCodecs[2]"]
    assert "listed twice" in str(issues[0]) and "not a codec Jellyfin decodes" in str(issues[1])


def test_empty_codec_list_is_refused():
    issues = jellyfin_config_issues(with_jellyfin(homelab_cfg(), decode_codecs=[]))
    assert [issue.key for issue in issues] == ["jellyfin.decodeCodecs"]


def test_ampere_by_generation_alone_does_not_choose_av1():
    assert "av1" not in decode_codecs_for("ampere")


def test_ga10x_decodes_av1_by_default_and_ga100_refuses_it():
    ga10x = with_generation(with_jellyfin(homelab_cfg(), decode_codecs=["h264", "av1"]), "ampere", "ga10x")
    assert jellyfin_config_issues(ga10x) == []
    assert "av1" in encoding_wanted(with_generation(homelab_cfg(), None, "ga10x")).hardware_decoding_codecs
    ga100 = with_generation(with_jellyfin(homelab_cfg(), decode_codecs=["h264", "av1"]), "ampere", "ga100")
    (issue,) = jellyfin_config_issues(ga100)
    assert issue.key == "jellyfin.decodeCodecs" and "'av1' cannot be decoded in hardware by a ampere (ga100) GPU" in str(issue)


def test_jellyfin_on_ampere_needs_the_chip_named():
    # GA100 (A100, A30) has no NVENC, GA10x has: the generation cannot tell them apart.
    issues = jellyfin_config_issues(with_generation(homelab_cfg(), "ampere"))
    assert [issue.key for issue in issues] == ["gpus[0].model"]
    text = str(issues[0])
    assert "ga100: GA100 (A100, A30), NVENC none" in text and "ga10x: GA102" in text and "lspci -nn -s 0000:3b:00.0" in text
    with pytest.raises(ConfigError, match=r"gpus\[0\]\.model"):
        encoding_wanted(with_generation(homelab_cfg(), "ampere"))


@pytest.mark.parametrize("model, generation", [("ga100", "ampere"), ("gh100", "hopper"), ("gp108", "pascal")])
def test_nvenc_less_chips_decode_only_and_refuse_encoding_naming_the_model(model, generation):
    wanted = encoding_wanted(with_generation(homelab_cfg(), generation, model))
    settings = wanted.settings()
    assert settings["EnableHardwareEncoding"] is False and settings["AllowHevcEncoding"] is False
    assert "h264" in wanted.hardware_decoding_codecs and "no NVENC" in wanted.reasons["EnableHardwareEncoding"]
    cfg = with_generation(with_jellyfin(homelab_cfg(), allow_hevc_encoding=True), generation, model)
    (issue,) = jellyfin_config_issues(cfg)
    assert issue.key == "jellyfin.allowHevcEncoding"
    assert f"gpus[0].model={model}" in str(issue) and "nothing (no NVENC)" in str(issue)


def test_the_model_implies_the_generation_and_must_agree_with_it():
    cfg = homelab_cfg(allowHevcEncoding=True)
    raw = cfg.model_dump(by_alias=True)
    raw["gpus"][0].update(generation=None, model="ga10x")
    from components.config import parse_stack_config

    assert encoding_wanted(parse_stack_config(raw)).allow_hevc_encoding is True
    raw["gpus"][0].update(generation="turing", model="gh100")
    with pytest.raises(ConfigError) as raised:
        parse_stack_config(raw)
    assert "proxmox-talos-gpu:gpus[0].model = 'gh100': GH100 is a hopper chip, but gpus[0].generation is turing" in str(raised.value)


def test_every_chip_the_config_accepts_has_a_row_with_a_source_or_marked_unverified():
    from components.consumers.capabilities import CHIPS, MIXED_GENERATIONS

    annotated = typing.get_args(GpuConfig.model_fields["model"].annotation)[0]  # Annotated[Literal[...], the lspci reader]
    accepted = set(typing.get_args(typing.get_args(annotated)[0]))
    assert accepted == set(CHIPS)
    for chip in CHIPS.values():
        assert chip.generation in GENERATIONS, chip
        assert chip.verified or chip.note.startswith("unverified"), chip
    assert {chip.generation for chip in CHIPS.values()} >= set(MIXED_GENERATIONS)
    for generation in MIXED_GENERATIONS:  # a mixed generation has chips with and without NVENC
        assert {bool(chip.encode) for chip in CHIPS.values() if chip.generation == generation} == {True, False}, generation


def test_the_chip_table_in_the_docs_matches_the_code():
    from pathlib import Path

    from components.consumers.capabilities import CHIPS, ordered_codecs

    text = (Path(__file__).resolve().parents[2] / "docs" / "consumers.md").read_text()
    for chip in CHIPS.values():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{chip.model}` |")), None)
        assert row is not None, f"docs/consumers.md has no row for {chip.model}"
        assert (", ".join(ordered_codecs(chip.encode)) or "none") in row, row
        assert ("unverified" in row) is (not chip.verified), row


def test_enabled_jellyfin_needs_the_gpu_generation():
    cfg = with_generation(homelab_cfg(), None)
    issues = jellyfin_config_issues(cfg)
    assert [issue.key for issue in issues] == ["gpus[0].generation"]
    assert "a Tesla T4 is turing" in str(issues[0])


def test_disabled_jellyfin_without_settings_is_not_checked():
    cfg = with_generation(homelab_cfg(enabled=False), None)
    assert jellyfin_config_issues(cfg) == []


def test_disabled_jellyfin_still_refuses_an_impossible_explicit_codec():
    issues = jellyfin_config_issues(with_jellyfin(homelab_cfg(), enabled=False, decode_codecs=["av1"]))
    assert [issue.key for issue in issues] == ["jellyfin.decodeCodecs"]


NAMES = "h264, hevc, mpeg2video, mpeg4, vc1, vp8, vp9, av1"


def test_combined_capabilities_is_the_intersection_with_both_names_and_notes():
    from components.consumers.capabilities import GenerationCaps

    base = frozenset({"h264", "hevc", "mpeg2video", "mpeg4", "vc1"})
    assert combined_capabilities(["pascal", "turing", "pascal"]) == GenerationCaps(
        name="pascal+turing", decode=base | {"vp9"}, decode_select=frozenset({"vp8"}), encode=frozenset({"h264", "hevc"}),
        hevc_10bit_decode=True, vp9_10bit_decode=False,
        note=f"{CAPABILITIES['pascal'].note}; {CAPABILITIES['turing'].note}; {CAPABILITIES['pascal'].note}")
    assert combined_capabilities(["ada", "blackwell"]).hevc_10bit_decode is True
    assert combined_capabilities(["ada", "blackwell"]).vp9_10bit_decode is True
    with pytest.raises(ValueError, match="^no GPU generation given$"):
        combined_capabilities([])


def test_each_refused_codec_is_one_issue_naming_key_value_and_what_is_allowed():
    from components.config import ConfigIssue
    from components.consumers.capabilities import decode_codec_issues

    asked = ["H.265", "prores", "h264", "h264", "av1"]
    turing = CAPABILITIES["turing"]
    assert decode_codec_issues(asked, turing, "gpus[0]") == [
        ConfigIssue("jellyfin.decodeCodecs[0]", "H.265", f"Jellyfin calls this codec 'hevc'; use its names: {NAMES}"),
        ConfigIssue("jellyfin.decodeCodecs[1]", "prores", f"not a codec Jellyfin decodes with NVDEC; Jellyfin's names: {NAMES}"),
        ConfigIssue("jellyfin.decodeCodecs[3]", "h264", "listed twice"),
        ConfigIssue("jellyfin.decodeCodecs", asked, f"'av1' cannot be decoded in hardware by a turing GPU (gpus[0]): {turing.note}; "
                                                    "allowed for this GPU: h264, hevc, mpeg2video, mpeg4, vc1, vp8, vp9"),
    ]
    # A generation without a note adds nothing after the GPU.
    assert decode_codec_issues(["av1"], CAPABILITIES["volta"], "gpus[1]") == [ConfigIssue(
        "jellyfin.decodeCodecs", ["av1"], "'av1' cannot be decoded in hardware by a volta GPU (gpus[1]); "
                                          "allowed for this GPU: h264, hevc, mpeg2video, mpeg4, vc1, vp8, vp9")]


def test_a_gpu_without_generation_is_told_the_choices():
    from components.config import ConfigIssue

    assert jellyfin_config_issues(with_generation(homelab_cfg(), None)) == [ConfigIssue(
        "gpus[0].generation", None,
        f"required when jellyfin.enabled is true, to choose the codecs the GPU can transcode; one of {', '.join(GENERATIONS)} (a Tesla T4 is turing)")]


@pytest.mark.parametrize("fields", [{"allow_av1_encoding": True}, {"allow_hevc_encoding": True, "allow_av1_encoding": True}])
def test_disabled_jellyfin_still_refuses_an_impossible_explicit_encoder(fields):
    issues = jellyfin_config_issues(with_jellyfin(homelab_cfg(), enabled=False, **fields))
    assert [issue.key for issue in issues] == ["jellyfin.allowAv1Encoding"]


def test_unknown_codec_names_are_only_lower_cased():
    from components.consumers.capabilities import normalise_codec

    assert [normalise_codec(name) for name in (" H.265 ", "AVC", "ProRes", "vp9")] == ["hevc", "h264", "prores", "vp9"]


def test_an_empty_codec_list_is_told_the_default():
    from components.config import ConfigIssue

    assert jellyfin_config_issues(with_jellyfin(homelab_cfg(), decode_codecs=[])) == [ConfigIssue(
        "jellyfin.decodeCodecs", [], "empty: list at least one codec, or leave the key out to use every codec the GPU decodes "
                                     "(h264, hevc, mpeg2video, mpeg4, vc1, vp8, vp9)")]


@pytest.mark.parametrize(("generation", "fields", "issue"), [
    ("turing", {"allow_av1_encoding": True}, ("jellyfin.allowAv1Encoding", f"a turing GPU (gpus[0]) cannot encode AV1: {CAPABILITIES['turing'].note}; "
                                                                         "it encodes h264, hevc; set false or leave the key out")),
    ("volta", {"allow_av1_encoding": True}, ("jellyfin.allowAv1Encoding", "a volta GPU (gpus[0]) cannot encode AV1; it encodes h264, hevc; "
                                                                        "set false or leave the key out")),
    ("hopper", {"allow_hevc_encoding": True}, ("jellyfin.allowHevcEncoding", f"a hopper GPU (gpus[0]) cannot encode HEVC: {CAPABILITIES['hopper'].note}; "
                                                                           "it encodes nothing (no NVENC); set false or leave the key out")),
    ("turing", {"allow_hevc_encoding": True}, None),
    ("ada", {"allow_hevc_encoding": True, "allow_av1_encoding": True}, None),
])
def test_an_encoder_is_allowed_exactly_where_the_gpu_has_it(generation, fields, issue):
    from components.config import ConfigIssue

    issues = jellyfin_config_issues(with_generation(with_jellyfin(homelab_cfg(), **fields), generation))
    assert issues == ([] if issue is None else [ConfigIssue(issue[0], True, issue[1])])


OLD_DECODERS = frozenset({"h264", "hevc", "mpeg2video", "mpeg4", "vc1", "vp9"})


@pytest.mark.parametrize(("model", "row"), [
    ("ga100", GenerationCaps("ampere (ga100)", OLD_DECODERS | {"vp8"}, frozenset(), frozenset(), True, True,
                             "GA100 (A100, A30) has no NVENC and no AV1 decoding; AV1 decoding needs Ampere GA10x, Ada or Blackwell")),
    ("ga10x", GenerationCaps("ampere (ga10x)", OLD_DECODERS | {"vp8", "av1"}, frozenset(), frozenset({"h264", "hevc"}), True, True, "")),
    ("gp108", GenerationCaps("pascal (gp108)", OLD_DECODERS, frozenset({"vp8"}), frozenset(), True, False,
                             "GP108 has no NVENC; AV1 decoding needs Ampere GA10x, Ada or Blackwell")),
])
def test_a_chips_row_is_its_generations_decoders_with_its_own_av1_and_nvenc(model, row):
    assert chip_capabilities(model) == row


def test_an_unknown_chip_names_every_known_one():
    with pytest.raises(ValueError) as raised:
        chip_capabilities("gx999")
    assert str(raised.value) == "unknown GPU model 'gx999'; known: gp108, gp10x, gv100, tu10x, tu11x, ga100, ga10x, ad10x, gh100, gb100, gb20x"


def test_a_gpu_without_generation_or_model_has_no_capabilities():
    gpu = with_generation(homelab_cfg(), None).gpus[0]
    with pytest.raises(ValueError) as raised:
        gpu_capabilities(gpu)
    assert str(raised.value) == "the GPU has neither generation nor model"


def test_the_chip_question_lists_each_chip_with_its_nvenc_whole():
    _rows, issues = generation_issues(with_generation(homelab_cfg(), "ampere"))
    assert [(issue.key, issue.value, issue.allowed) for issue in issues] == [(
        "gpus[0].model", None,
        "required when jellyfin.enabled is true and gpus[0].generation is ampere: its chips differ in NVENC, and Jellyfin told to "
        "encode on a chip without it fails every transcode. `lspci -nn -s 0000:3b:00.0` on the Proxmox host names the chip. One of: "
        "ga100: GA100 (A100, A30), NVENC none; ga10x: GA102, GA103, GA104, GA106, GA107 (GeForce RTX 30, A2, A10, A16, A40, "
        "RTX A-series), NVENC h264, hevc")]


def test_an_encoder_refusal_names_every_gpus_model():
    cfg = with_jellyfin(homelab_cfg(), allow_hevc_encoding=True)
    first = cfg.gpus[0].model_copy(update={"generation": "ampere", "model": "ga100"})
    second = first.model_copy(update={"address": "0000:af:00.0", "generation": "hopper", "model": "gh100"})
    (issue,) = jellyfin_config_issues(cfg.model_copy(update={"gpus": [first, second]}))
    assert issue.key == "jellyfin.allowHevcEncoding"
    assert "GPU (gpus[0], gpus[1]) (gpus[0].model=ga100, gpus[1].model=gh100) cannot encode HEVC" in issue.allowed
