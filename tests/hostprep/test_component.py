"""HostVfioPrep under Pulumi's mock engine: graph, secrets, outputs."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components.config import ConfigError
from components.config.engine import load_stack_config
from components.hostprep.component import HostVfioPrep
from tools.mockengine import RecordingMonitor, StateMocks, is_secret, reveal, run_program

DYNAMIC = "pulumi-python:dynamic:Resource"
TOKEN = "proxmox-talos-gpu:host:HostVfioPrep"
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n"
HOST_OUTPUTS = {"drivers": {"0000:3b:00.0": "vfio-pci"}, "iommuGroups": {"0000:3b:00.0": 30},
                "subsystemIds": {"0000:3b:00.0": "10de:12a2"}, "rebooted": True}


def run(config: dict[str, Any], secrets: dict[str, str] | None = None, monkeypatch: pytest.MonkeyPatch | None = None):
    captured: dict[str, Any] = {}
    requests: list[Any] = []
    if monkeypatch is not None:
        original = RecordingMonitor.RegisterResource

        def record(self, request):
            requests.append(request)
            return original(self, request)

        monkeypatch.setattr(RecordingMonitor, "RegisterResource", record)

    def program() -> None:
        cfg = load_stack_config()
        key = pulumi.Config("proxmox-talos-gpu").get_secret("sshPrivateKey")
        prep = HostVfioPrep("pve5", cfg, key)
        captured["prep"] = prep
        pulumi.export("iommuGroups", prep.iommu_groups)
        pulumi.export("subsystemIds", prep.subsystem_ids)
        pulumi.export("drivers", prep.drivers)
        pulumi.export("rebooted", prep.rebooted)

    mocks = StateMocks(outputs={DYNAMIC: lambda args: HOST_OUTPUTS})
    result = run_program(program, config, secret_keys={"sshPrivateKey": KEY} if secrets is None else secrets, stack="homelab", mocks=mocks)
    return result, requests


def test_component_registers_one_parented_dynamic_resource_with_config_inputs(homelab):
    result, _ = run(homelab)
    component = result.one(TOKEN)
    prep = result.one(DYNAMIC)
    assert prep.parent == component.urn, prep.urn
    inputs = reveal(prep.inputs)
    assert (inputs["host"], inputs["port"], inputs["user"]) == ("pve5.lan", 22, "root")
    assert inputs["owner"] == "proxmox-talos-gpu/homelab"
    # None is not serialized: an unset gpus[].iommuGroup simply is not sent.
    assert inputs["gpus"] == [{"address": "0000:3b:00.0", "id": "10de:1eb8", "subsystemId": "10de:12a2", "index": 0}]
    assert inputs["hostKey"].startswith("SHA256:") and inputs["allowReboot"] is True and inputs["rebootOnDestroy"] is False
    assert "root" not in inputs  # the test-only root prefix never comes from config


def test_private_key_stays_secret_in_inputs_and_state(homelab, monkeypatch):
    result, requests = run(homelab, monkeypatch=monkeypatch)
    prep = result.one(DYNAMIC)
    assert is_secret(prep.inputs["privateKey"]), prep.urn
    assert reveal(prep.inputs["privateKey"]) == KEY
    assert is_secret(prep.inputs["__provider"])  # the pickled provider too
    request = next(r for r in requests if r.type == DYNAMIC)
    assert "privateKey" in request.additionalSecretOutputs
    for reg in result.registrations:
        for key, value in reg.inputs.items():
            if key != "privateKey" and not is_secret(value):
                assert "OPENSSH PRIVATE KEY" not in str(value), f"{reg.urn}.{key}"


def test_component_outputs_come_from_the_host(homelab):
    result, _ = run(homelab)
    assert result.outputs["iommuGroups"] == {"0000:3b:00.0": 30}
    assert result.outputs["subsystemIds"] == {"0000:3b:00.0": "10de:12a2"}
    assert result.outputs["drivers"] == {"0000:3b:00.0": "vfio-pci"}
    assert result.outputs["rebooted"] is True


def test_disabled_host_prep_touches_nothing_and_passes_config_through(homelab):
    homelab["host"] = {"enabled": False}
    homelab["gpus"][0]["iommuGroup"] = 30
    result, _ = run(homelab, secrets={})
    assert result.by_type(DYNAMIC) == []
    assert result.outputs["iommuGroups"] == {"0000:3b:00.0": 30}
    assert result.outputs["subsystemIds"] == {"0000:3b:00.0": "10de:12a2"}
    assert result.outputs["rebooted"] is False


def test_enabled_host_prep_without_a_key_names_the_secret(homelab):
    with pytest.raises(ConfigError, match="proxmox-talos-gpu:sshPrivateKey"):
        run(homelab, secrets={})


def test_kubeconfig_for_the_drain_is_a_secret_input_and_output(homelab):
    captured: dict[str, Any] = {}

    def program() -> None:
        cfg = load_stack_config()
        key = pulumi.Config("proxmox-talos-gpu").get_secret("sshPrivateKey")
        captured["prep"] = HostVfioPrep("pve5", cfg, key, kubeconfig=pulumi.Output.secret("apiVersion: v1\nkind: Config\n"))

    homelab["host"]["runningGuests"] = "stop"
    result = run_program(program, homelab, secret_keys={"sshPrivateKey": KEY}, stack="homelab",
                         mocks=StateMocks(outputs={DYNAMIC: lambda args: HOST_OUTPUTS}))
    prep = result.one(DYNAMIC)
    assert is_secret(prep.inputs["kubeconfig"]) and reveal(prep.inputs["kubeconfig"]).startswith("apiVersion: v1"), prep.urn
    inputs = reveal(prep.inputs)
    assert (inputs["runningGuests"], inputs["ownVmids"], inputs["nodeName"], inputs["handEdits"]) == ("stop", [1105], "moody-good", "refuse")
    assert (inputs["commandTimeoutSeconds"], inputs["drainTimeoutSeconds"], inputs["guestTimeoutSeconds"]) == (900, 300, 600)
    assert {"kubeconfig", "privateKey"} <= set(prep.additional_secret_outputs)


def test_component_registers_its_outputs_under_camel_case_keys(homelab, monkeypatch):
    from pulumi.runtime import rpc

    registered: dict[str, dict[str, Any]] = {}

    def record(self, request):
        registered[request.urn] = rpc.deserialize_properties(request.outputs)
        return original(self, request)

    original = RecordingMonitor.RegisterResourceOutputs
    monkeypatch.setattr(RecordingMonitor, "RegisterResourceOutputs", record)
    result, _ = run(homelab)
    component = result.one(TOKEN)
    assert registered[component.urn] == {"iommuGroups": {"0000:3b:00.0": 30}, "subsystemIds": {"0000:3b:00.0": "10de:12a2"},
                                         "drivers": {"0000:3b:00.0": "vfio-pci"}, "rebooted": True}, component.urn
