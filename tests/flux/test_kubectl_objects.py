"""components.kubectl.get_objects: the read-only `kubectl get --ignore-not-found
-o json` the Flux check and the gate use, against a stand-in kubectl that
prints what kubectl prints for none, one and several found objects."""

from __future__ import annotations

import json

import pytest

from components.kubectl import KubectlError, get_objects
from tests.doctor.fakecli import FakeCli, answer, rule

RELEASE = {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease", "metadata": {"name": "gpu-operator", "namespace": "gpu-operator"}}


@pytest.mark.parametrize(("stdout", "found"), [
    ("", []),  # --ignore-not-found and nothing there: kubectl prints nothing
    (json.dumps(RELEASE), [RELEASE]),  # one name: the object itself
    (json.dumps({"apiVersion": "v1", "kind": "List", "items": [RELEASE, RELEASE]}), [RELEASE, RELEASE]),
])
def test_get_objects_reads_none_one_or_a_list(fake: FakeCli, stdout: str, found: list) -> None:
    fake.set_rules("kubectl", [rule(["get"], answer(stdout))])
    assert get_objects("helmreleases.helm.toolkit.fluxcd.io", ["gpu-operator"], namespace="gpu-operator", timeout=30) == found
    (call,) = fake.calls("kubectl")
    assert call["argv"] == ["get", "helmreleases.helm.toolkit.fluxcd.io", "gpu-operator", "--ignore-not-found", "-o", "json",
                            "--request-timeout=25s", "--namespace", "gpu-operator"]


def test_get_objects_refuses_output_that_is_not_json(fake: FakeCli) -> None:
    fake.set_rules("kubectl", [rule(["get"], answer("NAME   AGE\ngpu-operator   1d\n"))])
    with pytest.raises(KubectlError) as caught:
        get_objects("helmreleases.helm.toolkit.fluxcd.io", ["gpu-operator"])
    assert caught.value.kind == "failed" and "printed no JSON" in str(caught.value)


def test_get_objects_classifies_an_unreachable_server(fake: FakeCli) -> None:
    fake.set_rules("kubectl", [rule(["get"], answer(stderr="Unable to connect to the server: dial tcp 192.168.8.99:6443: i/o timeout\n", rc=1))])
    with pytest.raises(KubectlError) as caught:
        get_objects("customresourcedefinitions.apiextensions.k8s.io", ["helmreleases.helm.toolkit.fluxcd.io"])
    assert caught.value.kind == "unreachable"
