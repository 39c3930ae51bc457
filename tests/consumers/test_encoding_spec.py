"""EncodingSpec: the Jellyfin encoding provider's inputs as one value, in
the keys the state already holds."""

from __future__ import annotations

import pytest

from components.consumers.encoding_spec import DEFAULT_TIMEOUT_SECONDS, EncodingSpec, encoding_spec
from components.consumers.jellyfin import encoding_wanted
from tests.consumers.conftest import API_KEY


def stored(cfg) -> dict:
    """What JellyfinTranscoding stored before the spec existed (without the
    API key and the outputs), written out key by key."""
    wanted = encoding_wanted(cfg)
    return {"url": cfg.jellyfin.url, "timeout_seconds": cfg.jellyfin.timeout_seconds, "settings": wanted.settings(),
            "reasons": dict(wanted.reasons), "decode_codecs": list(wanted.hardware_decoding_codecs)}


def test_to_dict_writes_the_stored_keys_and_from_dict_reads_them_back(cfg):
    spec = encoding_spec(cfg)
    assert spec.to_dict() == stored(cfg)
    assert EncodingSpec.from_dict({**stored(cfg), "api_key": API_KEY, "originals": {}, "applied": {}}) == spec
    assert EncodingSpec.from_dict(spec.to_dict()).to_dict() == stored(cfg)


def test_the_api_key_is_never_part_of_the_spec(cfg):
    spec = EncodingSpec.from_dict({**stored(cfg), "api_key": API_KEY})
    assert API_KEY not in repr(spec) and "api_key" not in spec.to_dict()


def test_a_state_without_timeout_or_reasons_reads_with_the_old_defaults(cfg):
    old = {key: value for key, value in stored(cfg).items() if key not in ("timeout_seconds", "reasons", "decode_codecs")}
    spec = EncodingSpec.from_dict(old)
    assert spec.timeout_seconds == DEFAULT_TIMEOUT_SECONDS and dict(spec.wanted.reasons) == {}
    assert spec.wanted.settings() == old["settings"]


def test_settings_this_program_does_not_own_are_refused(cfg):
    with pytest.raises(ValueError, match="not settings this program owns: EnableTonemapping"):
        EncodingSpec.from_dict({**stored(cfg), "settings": {**stored(cfg)["settings"], "EnableTonemapping": True}})
