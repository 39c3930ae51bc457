"""JellyfinTranscoding under Pulumi's mock engine: what it registers, that the
API key stays a secret, and that bad config stops it before registration."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

from components.config import PROJECT, ConfigError, StackConfig
from components.consumers.component import JellyfinTranscoding
from tests.consumers.conftest import API_KEY, homelab_cfg, with_jellyfin
from tests.stand_ins.jellyfin import FakeJellyfin
from tools import mockengine
from tools.mockengine import ProgramRun, StateMocks, is_secret, reveal, run_program

COMPONENT = "proxmox-talos-gpu:consumers:JellyfinTranscoding"
ENCODING = "pulumi-python:dynamic/consumers:JellyfinEncoding"


def _provider_outputs(args: Any) -> dict[str, Any]:
    """What the provider returns after a first run on a fresh server."""
    return {"changedSettings": ["AllowAv1Encoding", "HardwareAccelerationType"], "originals": {"HardwareAccelerationType": "none"}}


def _run(cfg: StackConfig, *, api_key: Any = None, preview: bool = False, with_dependency: bool = False) -> ProgramRun:
    def program() -> None:
        opts = None
        if with_dependency:
            gate = k8s.core.v1.Namespace("gpu-ready")
            opts = pulumi.ResourceOptions(depends_on=[gate])
        key = api_key if api_key is not None else pulumi.Config(PROJECT).require_secret("jellyfinApiKey")
        jellyfin = JellyfinTranscoding("jellyfin", cfg, api_key=key, opts=opts)
        pulumi.export("changed", jellyfin.changed_settings)
        pulumi.export("codecs", jellyfin.decode_codecs)

    return run_program(program, {}, secret_keys={"jellyfinApiKey": API_KEY}, preview=preview,
                       mocks=StateMocks(outputs={ENCODING: _provider_outputs}))


def _plain_text(value: Any) -> str:
    """Everything not wrapped as a secret, as text."""
    def strip(item: Any) -> Any:
        if is_secret(item):
            return "[secret]"
        if isinstance(item, dict):
            return {key: strip(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [strip(inner) for inner in item]
        return item
    return json.dumps(strip(value))


@pytest.fixture(scope="module")
def homelab_run() -> ProgramRun:
    return _run(homelab_cfg())


def test_component_has_its_type_token_and_parents_the_encoding_resource(homelab_run):
    component = homelab_run.one(COMPONENT)
    encoding = homelab_run.one(ENCODING)
    assert encoding.parent == component.urn, encoding.urn
    assert encoding.custom and encoding.inputs["__provider"], encoding.urn


def test_encoding_resource_gets_the_t4_settings(homelab_run):
    encoding = homelab_run.one(ENCODING)
    settings = reveal(encoding.inputs["settings"])
    assert settings["HardwareAccelerationType"] == "nvenc", encoding.urn
    assert settings["EnableHardwareEncoding"] is True and settings["EnableEnhancedNvdecDecoder"] is True, encoding.urn
    assert "av1" not in settings["HardwareDecodingCodecs"] and settings["AllowAv1Encoding"] is False, encoding.urn
    assert encoding.inputs["url"] == "http://jellyfin.media.svc.cluster.local:8096", encoding.urn
    assert encoding.inputs["timeoutSeconds"] == 30, encoding.urn


def test_every_state_key_of_the_encoding_resource_is_camel_case(homelab_run):
    encoding = homelab_run.one(ENCODING)
    # The declared outputs (None) are not sent; every input is kept in the state.
    assert set(encoding.inputs) - {"__provider"} == {"url", "apiKey", "timeoutSeconds", "settings", "reasons", "decodeCodecs"}, encoding.urn


def test_the_component_registers_its_outputs_in_camel_case(monkeypatch):
    registered: list[dict[str, Any]] = []
    original = JellyfinTranscoding.register_outputs

    def recording(self, outputs):
        registered.append(dict(outputs))
        return original(self, outputs)

    monkeypatch.setattr(JellyfinTranscoding, "register_outputs", recording)
    _run(homelab_cfg())
    assert [sorted(outputs) for outputs in registered] == [["changedSettings", "decodeCodecs", "settings"]]


def test_api_key_is_a_secret_input_and_never_plain(homelab_run):
    for reg in homelab_run.registrations:
        assert API_KEY not in _plain_text(reg.inputs), f"{reg.urn}: the API key appears outside a secret"
    encoding = homelab_run.one(ENCODING)
    assert is_secret(encoding.inputs["apiKey"]), encoding.urn
    assert reveal(encoding.inputs["apiKey"]) == API_KEY, encoding.urn


def test_a_plain_string_key_is_made_secret_too():
    run = _run(homelab_cfg(), api_key=API_KEY)
    encoding = run.one(ENCODING)
    assert is_secret(encoding.inputs["apiKey"]), encoding.urn
    assert all(API_KEY not in _plain_text(reg.inputs) for reg in run.registrations)


def test_api_key_is_declared_a_secret_output(monkeypatch):
    seen: dict[str, list[str]] = {}
    original = mockengine.RecordingMonitor.RegisterResource

    def recording(self, request):
        seen[request.name] = list(request.additionalSecretOutputs)
        return original(self, request)

    monkeypatch.setattr(mockengine.RecordingMonitor, "RegisterResource", recording)
    _run(homelab_cfg())
    assert seen["jellyfin-encoding"] == ["apiKey"], "delete needs the key from the outputs, so the state must hold it encrypted"


def test_outputs_come_from_the_provider(homelab_run):
    assert homelab_run.outputs["changed"] == ["AllowAv1Encoding", "HardwareAccelerationType"]
    assert homelab_run.outputs["codecs"] == ["h264", "hevc", "mpeg2video", "mpeg4", "vc1", "vp8", "vp9"]


def test_encoding_waits_for_what_the_component_waits_for():
    run = _run(homelab_cfg(), with_dependency=True)
    gate = run.one("kubernetes:core/v1:Namespace")
    encoding = run.one(ENCODING)
    assert gate.urn in encoding.dependencies, f"{encoding.urn} must wait for {gate.urn} itself, not only through its parent"


def test_preview_touches_no_jellyfin():
    with FakeJellyfin(API_KEY) as server:
        cfg = with_jellyfin(homelab_cfg(), url=server.url)
        run = _run(cfg, preview=True)
        assert run.one(ENCODING).inputs["url"] == server.url
        assert server.requests == []


def test_av1_on_a_t4_stops_before_any_registration(monkeypatch):
    registered: list[str] = []
    original = mockengine.RecordingMonitor.RegisterResource

    def recording(self, request):
        registered.append(request.type)
        return original(self, request)

    monkeypatch.setattr(mockengine.RecordingMonitor, "RegisterResource", recording)
    with pytest.raises(ConfigError, match=r"proxmox-talos-gpu:jellyfin\.decodeCodecs = \['h264', 'av1'\]"):
        _run(with_jellyfin(homelab_cfg(), decode_codecs=["h264", "av1"]))
    assert COMPONENT not in registered and ENCODING not in registered


def test_disabled_jellyfin_is_refused():
    with pytest.raises(ConfigError, match=r"proxmox-talos-gpu:jellyfin\.enabled"):
        _run(homelab_cfg(enabled=False))
