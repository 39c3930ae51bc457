"""The GPU mode migration before the step to Talos 1.13: the planner (pure)
on the device plugin's Helm records and RuntimeClass nvidia, and the
provider the engine's way against the stand-in kubectl's cluster."""

from __future__ import annotations

import pytest

from components.gpu_migration_facts import OWNER_LABEL, ClusterFacts, parse_release_secrets, parse_runtime_class
from components.gpu_migration_plan import GPU_UNAVAILABLE, plan_removal
from tests.stand_ins.kubectl_objects import FakeKubectl, device_plugin_objects, installed_device_plugin, release_secret, runtime_class
from tests.talos.conftest import FakeTalosctl
from tests.talos.engine import engine, registration
from tests.talos.test_component import run_node

MIGRATION = "pulumi-python:dynamic/migration:GpuModeMigration"
OURS = {"namespace": "gpu-operator", "release_name": "nvidia-device-plugin"}


def facts(objects: list[dict]) -> ClusterFacts:
    secrets = [obj for obj in objects if obj["kind"] == "Secret"]
    runtime = next((obj for obj in objects if obj["kind"] == "RuntimeClass"), None)
    return ClusterFacts(parse_release_secrets(secrets), parse_runtime_class(runtime))


def test_the_latest_revision_of_the_device_plugin_release_is_read_from_helms_records() -> None:
    other = release_secret("metrics", "monitoring", 1, [], chart="kube-prometheus-stack")
    [release] = parse_release_secrets([*installed_device_plugin(), other])
    assert (release.namespace, release.name, release.revision, release.status) == ("gpu-operator", "nvidia-device-plugin", 2, "deployed")
    assert release.records == ("sh.helm.release.v1.nvidia-device-plugin.v1", "sh.helm.release.v1.nvidia-device-plugin.v2")
    assert [ref.line() for ref in release.objects] == [
        "ServiceAccount gpu-operator/nvidia-device-plugin-service-account", "ClusterRole nvidia-device-plugin-role",
        "ClusterRoleBinding nvidia-device-plugin-role-binding", "DaemonSet gpu-operator/nvidia-device-plugin",
        "DaemonSet gpu-operator/nvidia-device-plugin-gpu-feature-discovery"]


def test_this_stacks_release_and_runtime_class_go_daemonsets_first_records_stay() -> None:
    plan = plan_removal(facts([*installed_device_plugin(), runtime_class(dict([OWNER_LABEL]))]), **OURS, adopt_guide_objects=False)
    assert plan.refused == []
    removed = [removal.ref.line() for removal in plan.removals]
    assert removed[:2] == ["DaemonSet gpu-operator/nvidia-device-plugin", "DaemonSet gpu-operator/nvidia-device-plugin-gpu-feature-discovery"]
    assert removed[-1] == "RuntimeClass nvidia"
    assert not any(line.startswith("Secret") for line in removed), "the old Release resource's helm uninstall removes the records"
    assert any("Helm's records stay" in note for note in plan.notes)
    assert plan.lines()[-1] == f"note: {GPU_UNAVAILABLE}"


def test_the_guides_objects_are_refused_unless_adopted() -> None:
    guide = [*device_plugin_objects("nvidia-device-plugin", "default"),
             release_secret("nvidia-device-plugin", "default", 1, device_plugin_objects("nvidia-device-plugin", "default")),
             runtime_class()]
    refused = plan_removal(facts(guide), **OURS, adopt_guide_objects=False)
    assert len(refused.refused) == 2 and all("gpuStack.adoptGuideObjects: true" in line for line in refused.refused)
    assert "helm uninstall -n default nvidia-device-plugin" in refused.refused[0]
    assert "kubectl delete runtimeclass nvidia" in refused.refused[1]
    adopted = plan_removal(facts(guide), **OURS, adopt_guide_objects=True)
    removed = [removal.ref.line() for removal in adopted.removals]
    assert "Secret default/sh.helm.release.v1.nvidia-device-plugin.v1" in removed, "an adopted release goes with its records"
    assert "RuntimeClass nvidia" in removed and adopted.refused == []


def test_the_gpu_operators_runtime_class_is_never_touched() -> None:
    plan = plan_removal(facts([runtime_class(owner=True)]), **OURS, adopt_guide_objects=True)
    assert plan.removals == [] and any("GPU Operator" in note for note in plan.notes)
    assert plan.lines()[0].startswith("nothing to remove")


# -- the provider, the engine's way ----------------------------------------


@pytest.fixture
def migration(homelab) -> tuple[str, dict]:
    run, _ = run_node(homelab)
    return registration(run, MIGRATION)


def test_preview_lists_the_removals_and_changes_nothing(migration, fake_kubectl: FakeKubectl, fake_talosctl: FakeTalosctl) -> None:
    fake_kubectl.objects([*installed_device_plugin(), runtime_class(dict([OWNER_LABEL]))])
    provider, props = migration
    checked = engine(provider, "check", props, fake_talosctl.env())["ok"]
    pending = checked["inputs"]["pendingChanges"]
    assert "remove DaemonSet gpu-operator/nvidia-device-plugin (object of Helm release gpu-operator/nvidia-device-plugin (chart nvidia-device-plugin))" in pending
    assert "remove RuntimeClass nvidia (this program's)" in pending and f"note: {GPU_UNAVAILABLE}" in pending
    assert engine(provider, "diff", checked["inputs"], fake_talosctl.env(), olds=props)["ok"]["changes"] is True
    assert fake_kubectl.calls() and not any(call["mutated"] for call in fake_kubectl.calls())
    assert {call["argv"][2] if call["argv"][0] == "--kubeconfig" else call["argv"][0] for call in fake_kubectl.calls()} == {"get"}


def test_up_removes_the_device_plugin_and_runtime_class_and_warns(migration, fake_kubectl: FakeKubectl, fake_talosctl: FakeTalosctl) -> None:
    fake_kubectl.objects([*installed_device_plugin(), runtime_class(dict([OWNER_LABEL]))])
    provider, props = migration
    result = engine(provider, "create", props, fake_talosctl.env())
    outs = result["ok"]["outs"]
    assert not fake_kubectl.has("DaemonSet", "nvidia-device-plugin") and not fake_kubectl.has("RuntimeClass", "nvidia")
    assert fake_kubectl.has("Secret", "sh.helm.release.v1.nvidia-device-plugin.v2")
    assert f"WARNING: {GPU_UNAVAILABLE}" in result["stderr"] and outs["message"] == f"WARNING: {GPU_UNAVAILABLE}"
    assert "kubeconfig" not in outs
    again = engine(provider, "create", props, fake_talosctl.env())["ok"]["outs"]
    assert all(not line.startswith("RuntimeClass") for line in again["removed"])


def test_up_refuses_the_guides_runtime_class_and_deletes_nothing(migration, fake_kubectl: FakeKubectl, fake_talosctl: FakeTalosctl) -> None:
    fake_kubectl.objects([*installed_device_plugin(), runtime_class()])
    provider, props = migration
    result = engine(provider, "create", props, fake_talosctl.env())
    assert result["error"] == "MigrationRefused" and "gpuStack.adoptGuideObjects" in result["message"]
    assert not any(call["mutated"] for call in fake_kubectl.calls()), "nothing is deleted when something is refused"
    adopted = engine(provider, "create", {**props, "adoptGuideObjects": True}, fake_talosctl.env())
    assert "ok" in adopted and not fake_kubectl.has("RuntimeClass", "nvidia")


def test_preview_with_the_cluster_unreachable_does_not_fail(migration, fake_kubectl: FakeKubectl, fake_talosctl: FakeTalosctl) -> None:
    fake_kubectl.unreachable()
    provider, props = migration
    checked = engine(provider, "check", props, fake_talosctl.env())["ok"]
    assert checked["inputs"]["pendingChanges"][0].startswith("not known: cannot read the cluster")
