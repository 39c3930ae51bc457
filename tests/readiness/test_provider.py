"""The dynamic provider end to end against a stand-in kubectl whose answers
change over successive calls, and the engine's way: serialized with dill by
the mock engine, loaded and driven in a fresh Python process."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest

from components.config.engine import load_stack_config, secret
from components.readiness.component import GpuReadiness
from components.readiness.gate import GateError
from components.readiness.provider import GpuReadinessProvider
from tests.conftest import stack_file_config
from tests.doctor.fakecli import FakeCli, answer, install_on_path, rule
from tests.doctor.samples import node_json
from tests.stand_ins.clock import FakeClock
from tools.mockengine import StateMocks, is_secret, reveal, run_program

ROOT = Path(__file__).resolve().parents[2]
GATE_TYPE = "pulumi-python:dynamic/readiness:GpuReadinessGate"
KUBECONFIG = "apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n    client-key-data: c2VjcmV0LWNsaWVudC1rZXktZGF0YQ==\n"
NOT_FOUND = answer(stderr='Error from server (NotFound): nodes "moody-good" not found\n', rc=1)
PROPS = {"nodeName": "moody-good", "gpus": 1, "expectedGpus": 4, "configKey": "moody-good", "namespace": "gpu-operator",
         "timeoutSeconds": 900, "pollSeconds": 5.0, "maxPollSeconds": 30.0, "kubeconfig": KUBECONFIG,
         "allocatable": None, "product": None, "driverVersion": None}


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCli:
    return install_on_path(tmp_path, monkeypatch)


def node_rules(*responses: dict) -> list[dict]:
    return [rule(["get", "node", "moody-good", "-o", "json"], *responses)]


def test_create_waits_through_absent_then_unlabelled_node_until_ready(fake: FakeCli) -> None:
    fake.set_rules("kubectl", node_rules(NOT_FOUND, answer(node_json(allocatable={"nvidia.com/gpu": None})),
                                         answer(node_json(labels={"nvidia.com/gpu.product": None})), answer(node_json())))
    clock, messages = FakeClock(), []
    provider = GpuReadinessProvider(clock=clock, sleep=clock.sleep, progress=messages.append)
    result = provider.create(dict(PROPS))
    assert result.id == "moody-good-gpu-ready"
    assert (result.outs["allocatable"], result.outs["product"], result.outs["driverVersion"]) == (4, "Tesla-T4-SHARED", "595.91.07")
    assert "kubeconfig" not in result.outs, "the secret is an input only, never stored as an output"
    calls = fake.calls("kubectl")
    assert len(calls) == 4
    assert all(call["config_mode"] == "0o600" and call["config_text"] == KUBECONFIG for call in calls)
    assert not any(Path(call["config_path"]).exists() for call in calls)
    assert len(messages) == 4 and "Talos/VM" in messages[0] and "GPU Feature Discovery" in messages[2]


def test_create_times_out_naming_the_layer(fake: FakeCli) -> None:
    fake.set_rules("kubectl", node_rules(answer(node_json(allocatable={"nvidia.com/gpu": "1"}))))
    clock = FakeClock()
    provider = GpuReadinessProvider(clock=clock, sleep=clock.sleep, progress=lambda message: None)
    with pytest.raises(GateError, match="Missing layer: time-slicing config"):
        provider.create({**PROPS, "timeoutSeconds": 60})
    assert clock.now == pytest.approx(60)


def test_check_diff_and_delete() -> None:
    provider = GpuReadinessProvider()
    assert provider.check({}, dict(PROPS)).failures == []
    bad = provider.check({}, {**PROPS, "expectedGpus": 0, "nodeName": "", "pollSeconds": True})
    assert sorted(failure.property for failure in bad.failures) == ["expectedGpus", "nodeName", "pollSeconds"]
    olds = {key: PROPS[key] for key in ("nodeName", "gpus", "expectedGpus", "configKey", "namespace")}
    assert provider.diff("id", olds, dict(PROPS)).changes is False, "a second `pulumi up` waits for nothing"
    assert provider.diff("id", olds, {**PROPS, "timeoutSeconds": 60, "kubeconfig": "other"}).changes is False
    assert provider.diff("id", olds, {**PROPS, "expectedGpus": 8}).changes is True
    assert provider.delete("id", dict(PROPS)) is None


# -- the engine's way -------------------------------------------------------


def gate_program() -> None:
    cfg = load_stack_config()
    gate = GpuReadiness("gpu-ready", cfg, secret("kubeconfig"))
    pulumi.export("allocatable", gate.allocatable)
    pulumi.export("product", gate.product)
    pulumi.export("driverVersion", gate.driver_version)


def mocks() -> StateMocks:
    return StateMocks(outputs={GATE_TYPE: lambda args: {"allocatable": 4, "product": "Tesla-T4-SHARED", "driverVersion": "595.91.07"}})


def run_gate(config: dict | None = None, **kwargs):
    return run_program(gate_program, config or stack_file_config("homelab"), secret_keys={"kubeconfig": KUBECONFIG}, mocks=mocks(), **kwargs)


DRIVER = r"""
import base64, json, sys
import dill
request = json.load(sys.stdin)
provider = dill.loads(base64.b64decode(request["provider"]))
props = request["props"]
result = {"check": [f.property for f in provider.check({}, props).failures],
          "diff": provider.diff("id", request["olds"], props).changes}
try:
    created = provider.create(props)
    result["create"] = {"id": created.id, "outs": created.outs}
except Exception as error:
    result["error"] = f"{type(error).__name__}: {error}"
json.dump(result, sys.stdout)
"""


def drive_in_fresh_process(provider: str, props: dict, fake: FakeCli) -> dict:
    olds = {"nodeName": "moody-good", "gpus": 1, "expectedGpus": 2, "configKey": "moody-good"}
    done = subprocess.run([sys.executable, "-c", DRIVER], cwd=ROOT, env=fake.env(), input=json.dumps({"provider": provider, "props": props, "olds": olds}),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return {**json.loads(done.stdout), "stderr": done.stderr}


def test_serialized_provider_runs_in_a_fresh_process_until_ready(fake: FakeCli) -> None:
    run = run_gate()
    reg = run.one(GATE_TYPE)
    inputs = reveal(reg.inputs)
    provider = inputs.pop("__provider")
    assert KUBECONFIG.encode() not in base64.b64decode(provider) and b"c2VjcmV0LWNsaWVudC1rZXktZGF0YQ" not in base64.b64decode(provider)
    fake.set_rules("kubectl", node_rules(NOT_FOUND, answer(node_json(allocatable={"nvidia.com/gpu": "1"})), answer(node_json())))
    result = drive_in_fresh_process(provider, {**inputs, "pollSeconds": 0.05, "maxPollSeconds": 0.1}, fake)
    assert result["check"] == [] and result["diff"] is True
    assert result["create"]["outs"]["allocatable"] == 4 and result["create"]["outs"]["product"] == "Tesla-T4-SHARED"
    assert "info: [gpu-readiness] waiting (Talos/VM)" in result["stderr"], "progress goes to pulumi.log (stderr in the provider process)"
    assert KUBECONFIG not in result["stderr"]
    assert len(fake.calls("kubectl")) == 3


def test_serialized_provider_fails_with_the_missing_layer_in_a_fresh_process(fake: FakeCli) -> None:
    inputs = reveal(run_gate().one(GATE_TYPE).inputs)
    provider = inputs.pop("__provider")
    fake.set_rules("kubectl", node_rules(answer(node_json(labels={"nvidia.com/gpu.product": None}))))
    result = drive_in_fresh_process(provider, {**inputs, "timeoutSeconds": 1, "pollSeconds": 0.2, "maxPollSeconds": 0.2}, fake)
    assert result["error"].startswith("GateError: GPU readiness gate: node moody-good not ready after 1 s")
    assert "Missing layer: GPU Feature Discovery" in result["error"]


def test_component_registers_the_gate_with_a_secret_kubeconfig() -> None:
    run = run_gate()
    component = run.one("proxmox-talos-gpu:readiness:GpuReadiness")
    gate = run.one(GATE_TYPE)
    assert gate.parent == component.urn, gate.urn
    assert is_secret(gate.inputs["kubeconfig"]), f"{gate.urn}: kubeconfig must stay a secret"
    assert reveal(gate.inputs["kubeconfig"]) == KUBECONFIG
    inputs = reveal(gate.inputs)
    assert (inputs["nodeName"], inputs["expectedGpus"], inputs["gpus"], inputs["timeoutSeconds"]) == ("moody-good", 4, 1, 900)
    assert run.outputs == {"allocatable": 4, "product": "Tesla-T4-SHARED", "driverVersion": "595.91.07"}


def test_expected_count_follows_gpus_and_replicas() -> None:
    config = stack_file_config("homelab")
    config["gpus"] = config["gpus"] + [{**config["gpus"][0], "address": "0000:af:00.0", "slot": "hostpci1"}]
    config["gpuStack"] = {**config["gpuStack"], "timeSlicing": {"enabled": True, "replicas": 3}}
    config["readiness"] = {"timeoutSeconds": 120}
    inputs = reveal(run_gate(config).one(GATE_TYPE).inputs)
    assert (inputs["gpus"], inputs["expectedGpus"], inputs["timeoutSeconds"]) == (2, 6, 120)


def test_disabled_gate_registers_no_child() -> None:
    config = {**stack_file_config("homelab"), "readiness": {"enabled": False}}
    run = run_gate(config)
    assert run.by_type(GATE_TYPE) == []
    assert run.one("proxmox-talos-gpu:readiness:GpuReadiness")
    assert run.outputs == {"allocatable": None, "product": None, "driverVersion": None}


def test_preview_registers_the_gate_but_runs_no_kubectl(fake: FakeCli) -> None:
    fake.set_rules("kubectl", node_rules(answer(node_json())))
    run = run_gate(preview=True)
    assert run.one(GATE_TYPE)
    assert fake.calls("kubectl") == []
    assert os.environ["PATH"] == str(fake.bin)


def test_rename_by_default_gates_on_the_shared_resource_in_a_fresh_process(fake: FakeCli) -> None:
    # renameByDefault: the plugin advertises nvidia.com/gpu.shared and no nvidia.com/gpu
    # (k8s-device-plugin v0.18.2 api/config/v1/replicas.go, internal/rm/device_map.go).
    config = stack_file_config("homelab")
    config["gpus"] = config["gpus"] + [{**config["gpus"][0], "address": "0000:af:00.0", "slot": "hostpci1"}]
    config["gpuStack"] = {**config["gpuStack"], "timeSlicing": {"replicas": 3, "renameByDefault": True}}
    inputs = reveal(run_gate(config).one(GATE_TYPE).inputs)
    assert (inputs["resource"], inputs["expectedGpus"]) == ("nvidia.com/gpu.shared", 6)
    provider = inputs.pop("__provider")
    renamed = node_json(allocatable={"nvidia.com/gpu": None, "nvidia.com/gpu.shared": "6"})
    fake.set_rules("kubectl", node_rules(answer(node_json(allocatable={"nvidia.com/gpu": "2"})), answer(renamed)))
    result = drive_in_fresh_process(provider, {**inputs, "pollSeconds": 0.05, "maxPollSeconds": 0.1}, fake)
    assert result["create"]["outs"]["allocatable"] == 6 and result["create"]["outs"]["resource"] == "nvidia.com/gpu.shared"
    assert "advertises nvidia.com/gpu=2 but no nvidia.com/gpu.shared" in result["stderr"]


def test_a_gate_made_before_the_resource_input_does_not_wait_again() -> None:
    provider = GpuReadinessProvider()
    olds = {key: PROPS[key] for key in ("nodeName", "gpus", "expectedGpus", "configKey")}
    assert provider.diff("id", olds, {**PROPS, "resource": "nvidia.com/gpu"}).changes is False
    assert provider.diff("id", olds, {**PROPS, "resource": "nvidia.com/gpu.shared"}).changes is True
    assert [f.property for f in provider.check({}, {**PROPS, "resource": "memory"}).failures] == ["resource"]
