"""What each NVIDIA GPU generation, and each chip where the chips of one
generation differ, can decode (NVDEC) and encode (NVENC), in Jellyfin's codec
names, and the config checks built on it. It sits below the config package (components/config/),
which runs those checks; the config types appear here only as annotations.

Sources (re-check them when adding a generation or a chip):

- NVDEC: NVIDIA Video Codec SDK 13.0, "NVDEC Application Note", table "NVDEC
  Hardware Capabilities", whose columns group the chips as Pascal / Volta /
  Turing, GA100, Hopper / GA10x, Ada / Blackwell (and Jetson Thor): AV1 Main
  Profile decoding only on GA10x, Ada and Blackwell ("GA10x GPUs include all
  GPUs based on Ampere architecture except GA100"); VP8 on Pascal only "in
  select GPUs"; HEVC Main10 from Pascal.
  https://docs.nvidia.com/video-technologies/video-codec-sdk/13.0/nvdec-application-note/index.html
- VP9 10/12-bit decode: NVDEC Video Decoder API Programming Guide (SDK 9.0),
  Table 1: Pascal only "in select GPUs", every Volta and Turing GPU.
- NVENC: NVIDIA Video Codec SDK 13.0, "NVENC Application Note", tables "NVENC
  H264/HEVC/AV1 Hardware Capabilities": H.264 and HEVC (8 and 10-bit) from
  Pascal, AV1 only on Ada and Blackwell.
  https://docs.nvidia.com/video-technologies/video-codec-sdk/13.0/nvenc-application-note/index.html
- Chips without NVENC (GA100: A100/A30, GH100: H100/H200; GP108: GT 1030):
  NVIDIA "Video Encode and Decode GPU Support Matrix",
  https://developer.nvidia.com/video-encode-decode-support-matrix. On an
  H200, opening an NVENC session fails with NV_ENC_ERR_UNSUPPORTED_DEVICE
  while NVML's encoder capacity reports 100: NVML cannot tell whether a GPU
  has NVENC, so doctor runs a real encode instead.
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
from typing import TYPE_CHECKING

from components.config_issues import ConfigIssue

if TYPE_CHECKING:
    from components.config import GpuConfig, StackConfig

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
    # cannot tell them apart: gpus[].model does (CHIPS), and Jellyfin needs it.
    "ampere": GenerationCaps("ampere", _BASE | {"vp8", "vp9"}, frozenset({"av1"}), frozenset({"h264", "hevc"}),
                             hevc_10bit_decode=True, vp9_10bit_decode=True,
                             note="AV1 decoding only on GA10x chips, not GA100 (A100/A30, which also has no NVENC)"),
    "ada": GenerationCaps("ada", _BASE | {"vp8", "vp9", "av1"}, frozenset(), frozenset({"h264", "hevc", "av1"}),
                          hevc_10bit_decode=True, vp9_10bit_decode=True),
    # GH100 (H100, H200) has NVDECs (Turing column: no AV1) but no NVENC at all.
    "hopper": GenerationCaps("hopper", _BASE | {"vp8", "vp9"}, frozenset(), frozenset(),
                             hevc_10bit_decode=True, vp9_10bit_decode=True,
                             note="no NVENC: decoding only, Jellyfin encodes in software"),
    "blackwell": GenerationCaps("blackwell", _BASE | {"vp8", "vp9", "av1"}, frozenset(), frozenset({"h264", "hevc", "av1"}),
                                hevc_10bit_decode=True, vp9_10bit_decode=True),
}


@dataclass(frozen=True)
class Chip:
    """One row of the chip table: ``gpus[].model`` names it."""

    model: str
    generation: str
    chips: str  # the chip names lspci prints, e.g. "GA100"
    products: str
    encode: frozenset[str]
    av1_decode: bool
    source: str  # "" when no source confirms the row: unverified
    note: str = ""

    @property
    def verified(self) -> bool:
        return bool(self.source)


_MATRIX = "NVIDIA Video Encode and Decode GPU Support Matrix"
_NVDEC = "NVDEC Application Note (SDK 13.0), NVDEC Hardware Capabilities"
_NVENC = "NVENC Application Note (SDK 13.0), NVENC Hardware Capabilities"

# Generations whose chips differ in NVENC: Jellyfin needs gpus[].model there.
MIXED_GENERATIONS: tuple[str, ...] = ("pascal", "ampere", "blackwell")

CHIPS: dict[str, Chip] = {chip.model: chip for chip in (
    Chip("gp108", "pascal", "GP108", "GeForce GT 1030", frozenset(), False, _MATRIX, "GP108 has no NVENC"),
    Chip("gp10x", "pascal", "GP100, GP102, GP104, GP106, GP107", "Tesla P4/P40/P100, GeForce GTX 10 (not the GT 1030)",
         frozenset({"h264", "hevc"}), False, f"{_NVENC} (Pascal column); {_MATRIX}"),
    # Generations whose chips agree: a row per chip family all the same, so
    # the name lspci prints (components/gpu_chips.py) always finds its row.
    Chip("gv100", "volta", "GV100", "Tesla V100, Titan V, Quadro GV100", frozenset({"h264", "hevc"}), False,
         f"{_NVDEC} (Volta column); {_NVENC} (Volta column)"),
    Chip("tu10x", "turing", "TU102, TU104, TU106", "Tesla T4, GeForce RTX 20, Quadro RTX", frozenset({"h264", "hevc"}), False,
         f"{_NVDEC} (Turing column); {_NVENC} (Turing column)"),
    Chip("tu11x", "turing", "TU116, TU117", "GeForce GTX 16, T400/T600/T1000", frozenset({"h264", "hevc"}), False,
         f"{_NVDEC} (Turing column); {_NVENC} (Turing column; TU117 has the Volta encoder, same codecs)"),
    Chip("ga100", "ampere", "GA100", "A100, A30", frozenset(), False, f"{_MATRIX}; {_NVDEC} (footnote 3: GA100 is not GA10x)",
         "GA100 (A100, A30) has no NVENC and no AV1 decoding"),
    Chip("ga10x", "ampere", "GA102, GA103, GA104, GA106, GA107", "GeForce RTX 30, A2, A10, A16, A40, RTX A-series",
         frozenset({"h264", "hevc"}), True, f"{_NVDEC} (GA10x column); {_NVENC} (Ampere column)"),
    Chip("ad10x", "ada", "AD102, AD103, AD104, AD106, AD107", "GeForce RTX 40, L4, L40, RTX Ada", frozenset({"h264", "hevc", "av1"}), True,
         f"{_NVDEC} (Ada column); {_NVENC} (Ada column)"),
    Chip("gh100", "hopper", "GH100", "H100, H200", frozenset(), False,
         f"{_MATRIX}; measured on an H200 (NV_ENC_ERR_UNSUPPORTED_DEVICE)", "GH100 (H100, H200) has no NVENC"),
    # No source found for the datacenter Blackwell chips' NVENC: treated like
    # GA100 and GH100 (none) until a source or the doctor's encode probe says otherwise.
    Chip("gb100", "blackwell", "GB100", "B100, B200", frozenset(), True, "",
         "unverified: no NVIDIA source for NVENC on GB100 (B100, B200); treated as none"),
    Chip("gb20x", "blackwell", "GB202, GB203, GB205, GB206, GB207", "GeForce RTX 50, RTX PRO Blackwell",
         frozenset({"h264", "hevc", "av1"}), True, f"{_NVDEC} (Blackwell column); {_NVENC} (Blackwell column)"),
)}


def chip_capabilities(model: str) -> GenerationCaps:
    """The capability row of one chip: its generation's decoders, with AV1 as
    the chip has it, and the chip's own NVENC codecs."""
    try:
        chip = CHIPS[model]
    except KeyError:
        raise ValueError(f"unknown GPU model {model!r}; known: {', '.join(CHIPS)}") from None
    row = CAPABILITIES[chip.generation]
    av1 = frozenset({"av1"})
    decode = (row.decode | av1) if chip.av1_decode else (row.decode - av1)
    return GenerationCaps(
        name=f"{chip.generation} ({chip.model})",
        decode=decode,
        decode_select=row.decode_select - av1 - decode,
        encode=chip.encode,
        hevc_10bit_decode=row.hevc_10bit_decode,
        vp9_10bit_decode=row.vp9_10bit_decode,
        note="; ".join(part for part in (chip.note, "" if chip.av1_decode else
                                         "AV1 decoding needs Ampere GA10x, Ada or Blackwell") if part),
    )


def gpu_generation(gpu: GpuConfig) -> str | None:
    """``gpus[].generation``, or the generation of ``gpus[].model``."""
    return gpu.generation or (CHIPS[gpu.model].generation if gpu.model else None)


def gpu_capabilities(gpu: GpuConfig) -> GenerationCaps:
    """What one configured GPU can do: its chip's row when ``model`` is set,
    else its generation's. Raises ValueError when neither is set."""
    if gpu.model:
        return chip_capabilities(gpu.model)
    if gpu.generation is None:
        raise ValueError("the GPU has neither generation nor model")
    return capabilities_for(gpu.generation)


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


def combined_capabilities(generations: Iterable[str | GenerationCaps]) -> GenerationCaps:
    """What every one of ``generations`` (names or capability rows) can do:
    Jellyfin may be handed any of the node's GPUs, so only the common subset
    is safe."""
    rows = [item if isinstance(item, GenerationCaps) else capabilities_for(item) for item in generations]
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


def model_issues(cfg: StackConfig) -> list[ConfigIssue]:
    """``gpus[].model`` that contradicts ``gpus[].generation``."""
    issues = []
    for index, gpu in enumerate(cfg.gpus):
        if gpu.model and gpu.generation and CHIPS[gpu.model].generation != gpu.generation:
            chip = CHIPS[gpu.model]
            issues.append(ConfigIssue(
                f"gpus[{index}].model", gpu.model,
                f"{chip.chips} is a {chip.generation} chip, but gpus[{index}].generation is {gpu.generation}; "
                f"fix one of them (or leave generation out: the model implies it)",
            ))
    return issues


def generation_issues(cfg: StackConfig) -> tuple[list[GenerationCaps], list[ConfigIssue]]:
    """Each GPU's capability row, and an issue for each GPU whose generation
    is missing, or whose generation mixes chips with and without NVENC and
    whose ``model`` is not set."""
    rows: list[GenerationCaps] = []
    issues: list[ConfigIssue] = []
    for index, gpu in enumerate(cfg.gpus):
        generation = gpu_generation(gpu)
        if generation is None:
            issues.append(ConfigIssue(
                f"gpus[{index}].generation", None,
                f"required when jellyfin.enabled is true, to choose the codecs the GPU can transcode; one of {', '.join(GENERATIONS)} (a Tesla T4 is turing)",
            ))
        elif generation in MIXED_GENERATIONS and gpu.model is None:
            models = [chip for chip in CHIPS.values() if chip.generation == generation]
            options = "; ".join(f"{chip.model}: {chip.chips} ({chip.products}), NVENC "
                                f"{', '.join(ordered_codecs(chip.encode)) or 'none'}" for chip in models)
            issues.append(ConfigIssue(
                f"gpus[{index}].model", None,
                f"required when jellyfin.enabled is true and gpus[{index}].generation is {generation}: its chips differ in NVENC, "
                f"and Jellyfin told to encode on a chip without it fails every transcode. `lspci -nn -s {gpu.address}` on the "
                f"Proxmox host names the chip. One of: {options}",
            ))
        else:
            rows.append(gpu_capabilities(gpu))
    return rows, issues


def jellyfin_config_issues(cfg: StackConfig) -> list[ConfigIssue]:
    """Cross-field checks of the ``jellyfin`` section against the GPUs'
    generations. Empty when Jellyfin is disabled and nothing is set."""
    jellyfin = cfg.jellyfin
    explicit = jellyfin.decode_codecs is not None or jellyfin.allow_hevc_encoding or jellyfin.allow_av1_encoding
    mismatched = model_issues(cfg)
    if not jellyfin.enabled and not explicit:
        return mismatched
    rows, issues = generation_issues(cfg)
    if not jellyfin.enabled:
        issues = []  # a disabled section only has its explicit values checked
    issues = mismatched + issues
    if not rows or mismatched:
        return issues
    caps = combined_capabilities(rows)
    gpu_keys = ", ".join(f"gpus[{index}]" for index, gpu in enumerate(cfg.gpus) if gpu_generation(gpu))
    if jellyfin.decode_codecs is not None:
        if not jellyfin.decode_codecs:
            issues.append(ConfigIssue(DECODE_KEY, [], f"empty: list at least one codec, or leave the key out to use every codec the GPU decodes ({', '.join(ordered_codecs(caps.decode))})"))
        issues += decode_codec_issues(list(jellyfin.decode_codecs), caps, gpu_keys)
    for key, flag, codec in (("jellyfin.allowHevcEncoding", jellyfin.allow_hevc_encoding, "hevc"),
                             ("jellyfin.allowAv1Encoding", jellyfin.allow_av1_encoding, "av1")):
        if flag and codec not in caps.encode:
            encodes = ", ".join(ordered_codecs(caps.encode)) or "nothing (no NVENC)"
            why = f": {caps.note}" if caps.note else ""
            models = ", ".join(f"gpus[{index}].model={gpu.model}" for index, gpu in enumerate(cfg.gpus) if gpu.model)
            named = f" ({models})" if models else ""
            issues.append(ConfigIssue(key, flag, f"a {caps.name} GPU ({gpu_keys}){named} cannot encode {codec.upper()}{why}; it encodes {encodes}; set false or leave the key out"))
    return issues
