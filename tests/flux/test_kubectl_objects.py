"""components.kubectl.get_objects: the read-only `kubectl get --ignore-not-found
-o json` the Flux check, the gate and the mode migration use, against a
stand-in kubectl that prints what kubectl prints for none, one and several
found objects, and for a type the cluster does not serve; the migration's
delete without kubectl's wait and its merge patch."""

from __future__ import annotations

import json

import pytest

from components.kubectl import KubectlError, delete_object, get_objects, is_unserved_type, patch_object
from tests.doctor.fakecli import FakeCli, answer, rule

RELEASE = {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease", "metadata": {"name": "gpu-operator", "namespace": "gpu-operator"}}
# What get_objects runs (timeout 30 s: kubectl's own request timeout 25 s).
GET_RELEASE = ["get", "helmreleases.helm.toolkit.fluxcd.io", "gpu-operator", "--ignore-not-found", "-o", "json", "--request-timeout=25s"]
GET_CRD = ["get", "customresourcedefinitions.apiextensions.k8s.io", "helmreleases.helm.toolkit.fluxcd.io", "--ignore-not-found", "-o", "json",
           "--request-timeout=25s"]
GET_ALL_RELEASES = ["get", "helmreleases.helm.toolkit.fluxcd.io", "-o", "json", "--request-timeout=25s", "--all-namespaces"]


@pytest.mark.parametrize(("stdout", "found"), [
    ("", []),  # --ignore-not-found and nothing there: kubectl prints nothing
    (json.dumps(RELEASE), [RELEASE]),  # one name: the object itself
    (json.dumps({"apiVersion": "v1", "kind": "List", "items": [RELEASE, RELEASE]}), [RELEASE, RELEASE]),
])
def test_get_objects_reads_none_one_or_a_list(fake: FakeCli, stdout: str, found: list) -> None:
    fake.set_rules("kubectl", [rule([*GET_RELEASE, "--namespace", "gpu-operator"], answer(stdout))])
    assert get_objects("helmreleases.helm.toolkit.fluxcd.io", ["gpu-operator"], namespace="gpu-operator", timeout=30) == found
    (call,) = fake.calls("kubectl")
    assert call["argv"] == [*GET_RELEASE, "--namespace", "gpu-operator"]


def test_get_objects_refuses_output_that_is_not_json(fake: FakeCli) -> None:
    fake.set_rules("kubectl", [rule(GET_RELEASE, answer("NAME   AGE\ngpu-operator   1d\n"))])
    with pytest.raises(KubectlError) as caught:
        get_objects("helmreleases.helm.toolkit.fluxcd.io", ["gpu-operator"])
    assert caught.value.kind == "failed" and "printed no JSON" in str(caught.value)


def test_get_objects_classifies_an_unreachable_server(fake: FakeCli) -> None:
    fake.set_rules("kubectl", [rule(GET_CRD, answer(stderr="Unable to connect to the server: dial tcp 192.168.8.99:6443: i/o timeout\n", rc=1))])
    with pytest.raises(KubectlError) as caught:
        get_objects("customresourcedefinitions.apiextensions.k8s.io", ["helmreleases.helm.toolkit.fluxcd.io"])
    assert caught.value.kind == "unreachable"


def test_a_type_the_cluster_does_not_serve_is_no_objects_only_when_asked(fake: FakeCli) -> None:
    unserved = answer(stderr='error: the server doesn\'t have a resource type "helmreleases"\n', rc=1)
    fake.set_rules("kubectl", [rule(GET_ALL_RELEASES, unserved, unserved)])
    assert get_objects("helmreleases.helm.toolkit.fluxcd.io", all_namespaces=True, unserved_ok=True) == []
    with pytest.raises(KubectlError) as caught:
        get_objects("helmreleases.helm.toolkit.fluxcd.io", all_namespaces=True)
    assert caught.value.kind == "failed" and is_unserved_type(caught.value)


def test_an_unreachable_server_is_never_taken_for_an_unserved_type(fake: FakeCli) -> None:
    fake.set_rules("kubectl", [rule(GET_ALL_RELEASES, answer(stderr="The connection to the server 192.168.8.99:6443 was refused\n", rc=1))])
    with pytest.raises(KubectlError) as caught:
        get_objects("helmreleases.helm.toolkit.fluxcd.io", all_namespaces=True, unserved_ok=True)
    assert caught.value.kind == "unreachable" and not is_unserved_type(caught.value)


def test_delete_without_waiting_and_a_merge_patch_under_a_field_manager(fake: FakeCli) -> None:
    deleting = ["delete", "helmreleases.helm.toolkit.fluxcd.io", "x", "--ignore-not-found", "--wait=false", "--namespace", "gpu-operator"]
    patching = ["patch", "kustomizations.kustomize.toolkit.fluxcd.io", "x", "--type=merge", "--patch", '{"spec":{"suspend":true}}',
                "--field-manager=flux-client-side-apply", "--namespace", "flux-system"]
    fake.set_rules("kubectl", [rule(deleting, answer('helmrelease.helm.toolkit.fluxcd.io "x" deleted\n')),
                               rule(patching, answer("kustomization.kustomize.toolkit.fluxcd.io/x patched\n"))])
    delete_object("helmreleases.helm.toolkit.fluxcd.io", "x", namespace="gpu-operator", wait=False)
    patch_object("kustomizations.kustomize.toolkit.fluxcd.io", "x", {"spec": {"suspend": True}}, field_manager="flux-client-side-apply",
                 namespace="flux-system")
    deleted, patched = fake.calls("kubectl")
    assert (deleted["argv"], patched["argv"]) == (deleting, patching)
