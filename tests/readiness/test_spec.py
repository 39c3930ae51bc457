"""GateSpec: the readiness gate's inputs as one value, in the keys the
state already holds."""

from __future__ import annotations

from components.cluster import GPU_RESOURCE
from components.readiness.gate import Expectation, GateSpec

# What GpuReadiness stores today (flux delivery, time-slicing renamed).
STORED = {"nodeName": "moody-good", "gpus": 1, "expectedGpus": 4, "resource": "nvidia.com/gpu.shared",
          "configKey": "moody-good", "namespace": "gpu-operator",
          "helmRelease": {"namespace": "flux-system", "name": "gpu-operator"},
          "timeoutSeconds": 900, "pollSeconds": 5.0, "maxPollSeconds": 30.0}


def test_to_dict_writes_the_stored_keys_and_from_dict_reads_them_back():
    spec = GateSpec.from_dict({**STORED, "kubeconfig": "secret", "allocatable": None})
    assert spec.to_dict() == STORED
    assert GateSpec.from_dict(spec.to_dict()) == spec
    assert spec.expectation == Expectation(node_name="moody-good", gpus=1, advertised=4, config_key="moody-good",
                                           namespace="gpu-operator", resource="nvidia.com/gpu.shared")


def test_the_kubeconfig_is_never_part_of_the_spec():
    assert "kubeconfig" not in GateSpec.from_dict({**STORED, "kubeconfig": "secret"}).to_dict()


def test_a_gate_stored_before_resource_and_helm_release_existed_reads_with_the_old_defaults():
    old = {key: value for key, value in STORED.items() if key not in ("resource", "helmRelease", "configKey", "namespace")}
    spec = GateSpec.from_dict(old)
    assert (spec.resource, spec.helm_release, spec.config_key, spec.namespace) == (GPU_RESOURCE, None, "", "gpu-operator")
    assert spec.to_dict() == {**old, "resource": GPU_RESOURCE, "configKey": "", "namespace": "gpu-operator", "helmRelease": None}
