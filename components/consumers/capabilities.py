"""What each NVIDIA GPU generation can decode (NVDEC) and encode (NVENC), in
Jellyfin's codec names, and the config checks built on it.

Sources (re-check them when adding a generation):

- NVDEC: NVIDIA Video Codec SDK 13.0, "NVDEC Application Note", table "NVDEC
  Hardware Capabilities" (columns Pascal / Volta / Turing, GA100, Hopper /
  GA10x, Ada / Blackwell): AV1 Main Profile decoding only on GA10x, Ada and
  Blackwell; VP8 on Pascal only "in select GPUs"; HEVC Main10 from Pascal.
  https://docs.nvidia.com/video-technologies/video-codec-sdk/13.0/nvdec-application-note/index.html
- VP9 10/12-bit decode: NVDEC Video Decoder API Programming Guide (SDK 9.0),
  Table 1: Pascal only "in select GPUs", every Volta and Turing GPU.
- NVENC: NVIDIA Video Codec SDK 13.0, "NVENC Application Note", tables "NVENC
  H264/HEVC/AV1 Hardware Capabilities": H.264 and HEVC (8 and 10-bit) from
  Pascal, AV1 only on Ada and Blackwell.
  https://docs.nvidia.com/video-technologies/video-codec-sdk/13.0/nvenc-application-note/index.html
- Chips without NVENC (GA100: A100/A30, GH100: H100; GP108: GT 1030):
  NVIDIA "Video Encode and Decode GPU Support Matrix",
  https://developer.nvidia.com/video-encode-decode-support-matrix
- Jellyfin: "NVIDIA GPU" hardware-acceleration tutorial (HEVC 10-bit encode
  from Pascal, AV1 decode from Ampere, AV1 encode from Ada, "Enable enhanced
  NVDEC decoder"),
  https://jellyfin.org/docs/general/post-install/transcoding/hardware-acceleration/nvidia/
- Jellyfin codec names: the codecs ``EncodingHelper.GetNvdecVidDecoder`` maps
  to ``*_cuvid`` decoders (h264, hevc, mpeg2video, mpeg4, vc1, vp8, vp9, av1),
  jellyfin/jellyfin MediaBrowser.Controller/MediaEncoding/EncodingHelper.cs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from components.config import ConfigIssue, StackConfig

# Jellyfin's names for HardwareDecodingCodecs, in the order its dashboard
# lists them; plans write codecs in this order.
JELLYFIN_CODECS: tuple[str, ...] = ("h264", "hevc", "mpeg2video", "mpeg4", "vc1", "vp8", "vp9", "av1")

# Names people write that Jellyfin spells differently.
CODEC_ALIASES: dict[str, str] = {
    "avc": "h264", "h.264": "h264", "x264": "h264",
    "h265": "hevc", "h.265": "hevc", "x265": "hevc",
    "mpeg2": "mpeg2video", "vc-1": "vc1",
}

GENERATIONS: tuple[str, ...] = ("pascal", "volta", "turing", "ampere", "ada", "hopper", "blackwell")

DECODE_KEY = "jellyfin.decodeCodecs"


@dataclass(frozen=True)
class GenerationCaps:
    """Video engine capabilities of one GPU generation (or of several GPUs
    together: the intersection)."""

    name: str
    decode: frozenset[str]          # every GPU of the generation decodes these
    decode_select: frozenset[str]   # only some chips do: allowed when asked for, never chosen by default
    encode: frozenset[str]          # NVENC codecs; empty where the chip has no NVENC
    hevc_10bit_decode: bool
    vp9_10bit_decode: bool
    note: str = ""

    def allowed_decode(self) -> frozenset[str]:
        return self.decode | self.decode_select


_BASE = frozenset({"h264", "hevc", "mpeg2video", "mpeg4", "vc1"})

CAPABILITIES: dict[str, GenerationCaps] = {
    # NVDEC table, Pascal column: VP8 "Y1" (select GPUs). SDK 9.0 table: VP9
    # 10/12-bit on select Pascal GPUs. GP108 (GT 1030) has no NVENC; every
    # other Pascal chip encodes H.264 and HEVC (10-bit included).
    "pascal": GenerationCaps("pascal", _BASE | {"vp9"}, frozenset({"vp8"}), frozenset({"h264", "hevc"}),
                             hevc_10bit_decode=True, vp9_10bit_decode=False,
                             note="VP8 and 10-bit VP9 decoding only on some Pascal chips; GP108 (GT 1030) has no NVENC"),
    "volta": GenerationCaps("volta", _BASE | {"vp8", "vp9"}, frozenset(), frozenset({"h264", "hevc"}),
                            hevc_10bit_decode=True, vp9_10bit_decode=True),
    # The guide's Tesla T4 (TU104): H.264, HEVC (incl. 4:4:4), VP9 decode;
    # H.264 and HEVC encode; no AV1 either way.
    "turing": GenerationCaps("turing", _BASE | {"vp8", "vp9"}, frozenset(), frozenset({"h264", "hevc"}),
                             hevc_10bit_decode=True, vp9_10bit_decode=True,
                             note="no AV1 decode or encode (AV1 decode needs Ampere GA10x, Ada or Blackwell; AV1 encode Ada or Blackwell)"),
    # GA10x (RTX 30, A2/A10/A16/A40, RTX A-series) decodes AV1; GA100 (A100,
    # A30) follows the Turing column and has no NVENC. The generation alone
    # cannot tell them apart, so AV1 is allowed but not chosen by default.
    "ampere": GenerationCaps("ampere", _BASE | {"vp8", "vp9"}, frozenset({"av1"}), frozenset({"h264", "hevc"}),
                             hevc_10bit_decode=True, vp9_10bit_decode=True,
                             note="AV1 decoding only on GA10x chips, not GA100 (A100/A30, which also has no NVENC)"),
    "ada": GenerationCaps("ada", _BASE | {"vp8", "vp9", "av1"}, frozenset(), frozenset({"h264", "hevc", "av1"}),
                          hevc_10bit_decode=True, vp9_10bit_decode=True),
    # GH100 (H100) has NVDECs (Turing column: no AV1) but no NVENC at all.
    "hopper": GenerationCaps("hopper", _BASE | {"vp8", "vp9"}, frozenset(), frozenset(),
                             hevc_10bit_decode=True, vp9_10bit_decode=True,
                             note="no NVENC: decoding only, Jellyfin encodes in software"),
    "blackwell": GenerationCaps("blackwell", _BASE | {"vp8", "vp9", "av1"}, frozenset(), frozenset({"h264", "hevc", "av1"}),
                                hevc_10bit_decode=True, vp9_10bit_decode=True),
}


def ordered_codecs(codecs: Iterable[str]) -> list[str]:
    """``codecs`` in Jellyfin's dashboard order, unknown names dropped."""
    wanted = set(codecs)
    return [codec for codec in JELLYFIN_CODECS if codec in wanted]


def capabilities_for(generation: str) -> GenerationCaps:
    """The capability row of ``generation``; ValueError names the known ones."""
    try:
        return CAPABILITIES[generation]
    except KeyError:
        raise ValueError(f"unknown GPU generation {generation!r}; known: {', '.join(GENERATIONS)}") from None


def combined_capabilities(generations: Iterable[str]) -> GenerationCaps:
    """What every one of ``generations`` can do: Jellyfin may be handed any of
    the node's GPUs, so only the common subset is safe."""
    rows = [capabilities_for(generation) for generation in generations]
    if not rows:
        raise ValueError("no GPU generation given")
    if len(rows) == 1:
        return rows[0]
    decode = frozenset.intersection(*(row.decode for row in rows))
    allowed = frozenset.intersection(*(row.allowed_decode() for row in rows))
    return GenerationCaps(
        name="+".join(sorted({row.name for row in rows})),
        decode=decode,
        decode_select=allowed - decode,
        encode=frozenset.intersection(*(row.encode for row in rows)),
        hevc_10bit_decode=all(row.hevc_10bit_decode for row in rows),
        vp9_10bit_decode=all(row.vp9_10bit_decode for row in rows),
        note="; ".join(row.note for row in rows if row.note),
    )


def decode_codecs_for(generation: str) -> list[str]:
    """Codecs every GPU of ``generation`` decodes in hardware, in Jellyfin's
    names and dashboard order (the default for HardwareDecodingCodecs)."""
    return ordered_codecs(capabilities_for(generation).decode)


def encode_codecs_for(generation: str) -> list[str]:
    """Codecs ``generation``'s NVENC encodes (empty: no NVENC)."""
    return ordered_codecs(capabilities_for(generation).encode)


def normalise_codec(name: str) -> str:
    """``H.265`` -> ``hevc``; unknown names are returned lower-cased."""
    text = str(name).strip().lower()
    return CODEC_ALIASES.get(text, text)


def decode_codec_issues(codecs: list[str], caps: GenerationCaps, gpu_keys: str, key: str = DECODE_KEY) -> list[ConfigIssue]:
    """Refuse names Jellyfin does not know, aliases, duplicates and codecs the
    GPU cannot decode. ``gpu_keys`` names the config entries the capability
    came from (``gpus[0]``) so the message says which GPU is meant."""
    issues: list[ConfigIssue] = []
    seen: set[str] = set()
    allowed = ", ".join(ordered_codecs(caps.allowed_decode()))
    for index, codec in enumerate(codecs):
        path = f"{key}[{index}]"
        if codec not in JELLYFIN_CODECS:
            hint = normalise_codec(codec)
            if hint in JELLYFIN_CODECS:
                issues.append(ConfigIssue(path, codec, f"Jellyfin calls this codec {hint!r}; use its names: {', '.join(JELLYFIN_CODECS)}"))
            else:
                issues.append(ConfigIssue(path, codec, f"not a codec Jellyfin decodes with NVDEC; Jellyfin's names: {', '.join(JELLYFIN_CODECS)}"))
            continue
        if codec in seen:
            issues.append(ConfigIssue(path, codec, "listed twice"))
            continue
        seen.add(codec)
        if codec not in caps.allowed_decode():
            why = f": {caps.note}" if caps.note else ""
            issues.append(ConfigIssue(
                key, codecs,
                f"{codec!r} cannot be decoded in hardware by a {caps.name} GPU ({gpu_keys}){why}; allowed for this GPU: {allowed}",
            ))
    return issues


def generation_issues(cfg: StackConfig) -> tuple[list[str], list[ConfigIssue]]:
    """The GPUs' generations, and an issue for each GPU without one."""
    generations: list[str] = []
    issues: list[ConfigIssue] = []
    for index, gpu in enumerate(cfg.gpus):
        if gpu.generation is None:
            issues.append(ConfigIssue(
                f"gpus[{index}].generation", None,
                f"required when jellyfin.enabled is true, to choose the codecs the GPU can transcode; one of {', '.join(GENERATIONS)} (a Tesla T4 is turing)",
            ))
        else:
            generations.append(gpu.generation)
    return generations, issues


def jellyfin_config_issues(cfg: StackConfig) -> list[ConfigIssue]:
    """Cross-field checks of the ``jellyfin`` section against the GPUs'
    generations. Empty when Jellyfin is disabled and nothing is set."""
    jellyfin = cfg.jellyfin
    explicit = jellyfin.decode_codecs is not None or jellyfin.allow_hevc_encoding or jellyfin.allow_av1_encoding
    if not jellyfin.enabled and not explicit:
        return []
    generations, issues = generation_issues(cfg)
    if not jellyfin.enabled:
        issues = []  # a disabled section only has its explicit values checked
    if not generations:
        return issues
    caps = combined_capabilities(generations)
    gpu_keys = ", ".join(f"gpus[{index}]" for index, gpu in enumerate(cfg.gpus) if gpu.generation)
    if jellyfin.decode_codecs is not None:
        if not jellyfin.decode_codecs:
            issues.append(ConfigIssue(DECODE_KEY, [], f"empty: list at least one codec, or leave the key out to use every codec the GPU decodes ({', '.join(ordered_codecs(caps.decode))})"))
        issues += decode_codec_issues(list(jellyfin.decode_codecs), caps, gpu_keys)
    for key, flag, codec in (("jellyfin.allowHevcEncoding", jellyfin.allow_hevc_encoding, "hevc"),
                             ("jellyfin.allowAv1Encoding", jellyfin.allow_av1_encoding, "av1")):
        if flag and codec not in caps.encode:
            encodes = ", ".join(ordered_codecs(caps.encode)) or "nothing (no NVENC)"
            why = f": {caps.note}" if caps.note else ""
            issues.append(ConfigIssue(key, flag, f"a {caps.name} GPU ({gpu_keys}) cannot encode {codec.upper()}{why}; it encodes {encodes}; set false or leave the key out"))
    return issues
