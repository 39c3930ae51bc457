"""EncodingSpec: the Jellyfin encoding provider's inputs as one value, in
camelCase keys (state written under the snake_case keys of earlier versions
is tests/consumers/test_old_keys.py)."""

from __future__ import annotations

import pytest

from components.consumers.encoding_spec import DEFAULT_TIMEOUT_SECONDS, EncodingSpec, canonical, encoding_spec
from components.consumers.jellyfin import encoding_wanted
from tests.consumers.conftest import API_KEY


def stored(cfg) -> dict:
    """What JellyfinTranscoding registers (without the API key and the
    outputs), written out key by key."""
    wanted = encoding_wanted(cfg)
    return {"url": cfg.jellyfin.url, "timeoutSeconds": cfg.jellyfin.timeout_seconds, "settings": wanted.settings(),
            "reasons": dict(wanted.reasons), "decodeCodecs": list(wanted.hardware_decoding_codecs)}


def test_to_dict_writes_the_stored_keys_and_from_dict_reads_them_back(cfg):
    spec = encoding_spec(cfg)
    assert spec.to_dict() == stored(cfg)
    assert EncodingSpec.from_dict({**stored(cfg), "apiKey": API_KEY, "originals": {}, "applied": {}}) == spec
    assert EncodingSpec.from_dict(spec.to_dict()).to_dict() == stored(cfg)


def test_the_api_key_is_never_part_of_the_spec(cfg):
    spec = EncodingSpec.from_dict({**stored(cfg), "apiKey": API_KEY})
    assert API_KEY not in repr(spec) and "apiKey" not in spec.to_dict() and "api_key" not in spec.to_dict()


def test_a_state_without_timeout_or_reasons_reads_with_the_old_defaults(cfg):
    old = {key: value for key, value in stored(cfg).items() if key not in ("timeoutSeconds", "reasons", "decodeCodecs")}
    spec = EncodingSpec.from_dict(old)
    assert spec.timeout_seconds == DEFAULT_TIMEOUT_SECONDS and dict(spec.wanted.reasons) == {}
    assert spec.wanted.settings() == old["settings"]


def test_the_camel_case_timeout_wins_over_an_old_one_left_next_to_it(cfg):
    spec = EncodingSpec.from_dict({**stored(cfg), "timeoutSeconds": 5, "timeout_seconds": 60})
    assert spec.timeout_seconds == 5.0


def test_canonical_puts_each_renamed_key_under_its_new_name_only():
    props = {"url": "http://jf:8096", "api_key": "k", "timeout_seconds": 7, "changed_settings": ["A"],
             "lastChanges": ["new"], "last_changes": ["old"], "originals": {"A": 1}}
    assert canonical(props) == {"url": "http://jf:8096", "apiKey": "k", "timeoutSeconds": 7, "changedSettings": ["A"],
                                "lastChanges": ["new"], "originals": {"A": 1}}
    assert canonical({"url": "u"}) == {"url": "u"}, "a key absent in both spellings stays absent"


def test_settings_this_program_does_not_own_are_refused(cfg):
    with pytest.raises(ValueError, match="not settings this program owns: EnableTonemapping"):
        EncodingSpec.from_dict({**stored(cfg), "settings": {**stored(cfg)["settings"], "EnableTonemapping": True}})
