"""The GPU capability table moved below the config (components/gpu_capabilities.py),
which checks ``jellyfin.*`` with it; this path stays importable for the code
and the tests that name it."""

from components.gpu_capabilities import (
    CAPABILITIES,
    CHIPS,
    CODEC_ALIASES,
    DECODE_KEY,
    GENERATIONS,
    JELLYFIN_CODECS,
    MIXED_GENERATIONS,
    Chip,
    GenerationCaps,
    capabilities_for,
    chip_capabilities,
    combined_capabilities,
    decode_codec_issues,
    decode_codecs_for,
    encode_codecs_for,
    generation_issues,
    gpu_capabilities,
    gpu_generation,
    jellyfin_config_issues,
    model_issues,
    normalise_codec,
    ordered_codecs,
)

__all__ = [
    "CAPABILITIES", "CHIPS", "CODEC_ALIASES", "DECODE_KEY", "GENERATIONS", "JELLYFIN_CODECS", "MIXED_GENERATIONS",
    "Chip", "GenerationCaps", "capabilities_for", "chip_capabilities", "combined_capabilities", "decode_codec_issues",
    "decode_codecs_for", "encode_codecs_for", "generation_issues", "gpu_capabilities", "gpu_generation",
    "jellyfin_config_issues", "model_issues", "normalise_codec", "ordered_codecs",
]
