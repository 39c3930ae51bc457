"""helm-controller uninstalls a deleted HelmRelease's chart only when its
status names a storage namespace (fluxcd/helm-controller
internal/controller/helmrelease_controller.go ``reconcileReleaseDeletion``,
v1.6.3: "skipping Helm release uninstallation: no storage namespace
configured"); otherwise the deletion only drops the finalizer and the
release's objects stay. The migration then removes them itself, as for a
suspended HelmRelease, instead of waiting for an uninstall that never comes."""

from __future__ import annotations

from components.flux.in_cluster import parse_helm_release
from tests.stand_ins.kubectl_objects import FakeKubectl, node, runtime_class
from tests.talos.conftest import FakeTalosctl
from tests.talos.engine import engine
from tests.talos.test_flux_migration import OUR_CLASS, documents, migration, own  # noqa: F401  (fixtures)


def without_storage_namespace(objects: list[dict]) -> list[dict]:
    for obj in objects:
        if obj["kind"] == "HelmRelease":
            obj.setdefault("status", {}).pop("storageNamespace", None)
    return objects


def test_a_helmrelease_without_a_storage_namespace_is_not_uninstalled_by_the_stand_in(documents, fake_kubectl: FakeKubectl) -> None:  # noqa: F811
    fake_kubectl.install_flux()
    fake_kubectl.objects(without_storage_namespace(own(documents)))
    assert fake_kubectl.kubectl("delete", "helmrelease", "nvidia-device-plugin", "-n", "gpu-operator").returncode == 0
    assert not fake_kubectl.has("HelmRelease", "nvidia-device-plugin") and fake_kubectl.has("DaemonSet", "nvidia-device-plugin")
    assert any("deleted without an uninstall" in event for call in fake_kubectl.calls() for event in call["reconciled"])


def test_the_migration_removes_the_release_itself_when_helm_controller_would_not(migration, documents, fake_kubectl: FakeKubectl,  # noqa: F811
                                                                                 fake_talosctl: FakeTalosctl) -> None:
    objects = without_storage_namespace(own(documents))
    assert parse_helm_release(next(obj for obj in objects if obj["kind"] == "HelmRelease")).uninstalls_on_delete is False
    fake_kubectl.install_flux()
    fake_kubectl.objects([*objects, runtime_class(OUR_CLASS), node()])
    provider, props = migration
    result = engine(provider, "create", {**props, "uninstallTimeoutSeconds": 2}, fake_talosctl.env())
    assert "ok" in result, result
    assert "its status names no storage namespace, so helm-controller lets it go without uninstalling the chart" in result["stderr"]
    fake_kubectl.settle()
    left = {(obj["kind"], obj["metadata"]["name"]) for obj in fake_kubectl.objects()}
    assert left == {("Node", "moody-good")}, f"the device plugin stayed: {left}"
