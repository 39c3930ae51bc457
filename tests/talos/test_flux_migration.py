"""The mode migration where Flux installed the device plugin: the planner
(pure) on HelmReleases made by this program, applied from Git by a
Kustomization, or made by hand (the guide's), and the provider the engine's
way against the stand-in kubectl, whose helm-controller puts back what a
removal of the Helm objects alone deletes and whose kustomize-controller
applies Git again."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.config import StackConfig, parse_stack_config
from components.flux.in_cluster import helm_release_name
from components.flux.objects import helm_release, helm_repository
from components.gpu_migration_facts import OWNER_LABEL, cluster_facts
from components.gpu_migration_plan import GPU_UNAVAILABLE, plan_removal
from tests.conftest import ROOT
from tests.stand_ins.kubectl_objects import FakeKubectl, flux_device_plugin, kustomization, made_by, node, runtime_class
from tests.talos.conftest import FakeTalosctl
from tests.talos.engine import engine, registration
from tests.talos.test_component import run_node

MIGRATION = "pulumi-python:dynamic/migration:GpuModeMigration"
OURS = {"namespace": "gpu-operator", "release_name": "nvidia-device-plugin"}
KS = ("flux-system", "nvidia-device-plugin")  # what `render --flux` names the device plugin's Kustomization
OUR_CLASS = dict([OWNER_LABEL])


def plugin_cfg(homelab: dict[str, Any]) -> StackConfig:
    """The stack as it was before the switch: device plugin, Flux delivery, Talos 1.12."""
    raw = copy.deepcopy(homelab)
    raw["talos"]["version"] = "v1.12.11"
    raw["gpuStack"].update(mode="devicePlugin", delivery="flux")
    return parse_stack_config(raw)


@pytest.fixture
def documents(homelab) -> tuple[dict, dict]:
    """The HelmRelease and HelmRepository this program makes in device-plugin mode."""
    cfg = plugin_cfg(homelab)
    return helm_release(cfg), helm_repository(cfg)


def own(documents) -> list[dict]:
    return flux_device_plugin(*documents, "pulumi")


def from_git(documents) -> list[dict]:
    """The guide's layout: the rendered tree committed, applied by a Kustomization."""
    return [kustomization(KS[1]), *flux_device_plugin(*documents, KS), made_by(runtime_class(), KS)]


def lines(plan) -> list[str]:
    return [removal.line() for removal in plan.removals]


# -- the planner -------------------------------------------------------------


def test_this_programs_helmrelease_goes_not_its_helm_objects_then_its_repository_and_runtime_class(documents) -> None:
    plan = plan_removal(cluster_facts([*own(documents), runtime_class(OUR_CLASS)]), **OURS, adopt_guide_objects=False)
    assert plan.refused == []
    assert [(removal.action, removal.ref.line()) for removal in plan.removals] == [
        ("uninstall", "HelmRelease gpu-operator/nvidia-device-plugin"), ("delete", "HelmRepository gpu-operator/nvdp"),
        ("delete", "RuntimeClass nvidia")], "no DaemonSet or Helm record: helm-controller uninstalls them"
    assert [ref.line() for ref in plan.removals[0].wait_for] == [
        "DaemonSet gpu-operator/nvidia-device-plugin", "DaemonSet gpu-operator/nvidia-device-plugin-gpu-feature-discovery"]
    assert "helm-controller uninstalls the chart" in plan.removals[0].why
    assert any("pulumi-kubernetes counts an object already gone as deleted" in note for note in plan.notes)
    assert plan.lines()[-1] == f"note: {GPU_UNAVAILABLE}"


def test_the_repository_stays_while_something_else_reads_it(documents) -> None:
    other = made_by({**documents[0], "metadata": {"name": "gpu-exporter", "namespace": "monitoring"},
                     "spec": {**documents[0]["spec"], "chart": {"spec": {"chart": "dcgm-exporter", "sourceRef": {
                         "kind": "HelmRepository", "name": "nvdp", "namespace": "gpu-operator"}}}}}, "hand")
    plan = plan_removal(cluster_facts([*own(documents), other]), **OURS, adopt_guide_objects=False)
    assert [removal.ref.kind for removal in plan.removals] == ["HelmRelease"]
    assert "HelmRepository gpu-operator/nvdp stays: HelmRelease monitoring/gpu-exporter reads it" in plan.notes
    chart = {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmChart", "metadata": {"name": "mine", "namespace": "gpu-operator"},
             "spec": {"chart": "x", "sourceRef": {"kind": "HelmRepository", "name": "nvdp"}}}
    plan = plan_removal(cluster_facts([*own(documents), chart]), **OURS, adopt_guide_objects=False)
    assert "HelmRepository gpu-operator/nvdp stays: HelmChart gpu-operator/mine reads it" in plan.notes, \
        "a HelmChart of the user's; the one helm-controller made for the removed HelmRelease does not count"


def test_a_helmrelease_from_git_is_refused_naming_its_kustomization_and_what_to_do(documents) -> None:
    plan = plan_removal(cluster_facts(from_git(documents)), **OURS, adopt_guide_objects=True, flux_objects="git", stack="homelab")
    [refused] = plan.refused
    assert refused.startswith("HelmRelease gpu-operator/nvidia-device-plugin and RuntimeClass nvidia are applied from Git by Flux Kustomization "
                              "flux-system/nvidia-device-plugin (path ./kubernetes/homelab/apps/base/nvidia-gpu-operator/app of GitRepository "
                              "flux-system/profmoo-home): deleted here, Flux would apply them again."), refused
    for part in ("`python -m components.render --stack homelab --flux DIR`", "gpuStack.mode: operator",
                 "`flux reconcile kustomization -n flux-system nvidia-device-plugin --with-source`",
                 "proxmox-talos-gpu:gpuStack.flux.gitDevicePlugin: suspend"):
        assert part in refused, part
    assert plan.lines() == [f"refused: {refused}"], "adoptGuideObjects does not make a deletion last"


def test_docs_show_the_refusal_as_it_is(documents) -> None:
    text = (ROOT / "docs" / "talos.md").read_text().split("**From Git: refused by default.**", 1)[1]
    shown = text.split("```text\n", 1)[1].split("```", 1)[0]
    [refused] = plan_removal(cluster_facts(from_git(documents)), **OURS, adopt_guide_objects=False, stack="homelab").refused
    assert " ".join(shown.split()) == " ".join(f"not upgrading to Talos 1.13 yet: {refused}".split())


def test_objects_git_without_a_kustomization_is_refused_even_with_suspend(documents) -> None:
    # Applied from the rendered files by hand: config says Git, no Kustomization claims it.
    objects = flux_device_plugin(*documents, "hand")
    for policy in ("refuse", "suspend"):
        [refused] = plan_removal(cluster_facts(objects), **OURS, adopt_guide_objects=False, flux_objects="git", git_device_plugin=policy).refused
        assert "from your Git repository (gpuStack.flux.objects: git), but no Flux Kustomization claims it" in refused
    assert "nothing to suspend" in refused


def test_suspend_suspends_the_kustomization_first_and_says_to_resume_it_only_after_git_changed(documents) -> None:
    plan = plan_removal(cluster_facts(from_git(documents)), **OURS, adopt_guide_objects=False, flux_objects="git",
                        git_device_plugin="suspend", stack="homelab")
    assert plan.refused == []
    assert lines(plan) == [
        "suspend Kustomization flux-system/nvidia-device-plugin (applies HelmRelease gpu-operator/nvidia-device-plugin and RuntimeClass nvidia "
        "from Git; proxmox-talos-gpu:gpuStack.flux.gitDevicePlugin: suspend)",
        "remove HelmRelease gpu-operator/nvidia-device-plugin (Flux HelmRelease of chart nvidia-device-plugin from Git, Flux Kustomization "
        "flux-system/nvidia-device-plugin suspended; helm-controller uninstalls the chart, waited for until its objects are gone)",
        "remove RuntimeClass nvidia (from Git, Flux Kustomization flux-system/nvidia-device-plugin suspended)"], "the Git HelmRepository stays"
    [note] = [note for note in plan.notes if "stays suspended" in note]
    assert "`flux resume kustomization -n flux-system nvidia-device-plugin`" in note and "installs the device plugin again" in note


def test_suspend_is_refused_where_git_sets_the_kustomizations_suspend(documents) -> None:
    objects = [kustomization(KS[1], suspend_in_git=True), *flux_device_plugin(*documents, KS)]
    [refused] = plan_removal(cluster_facts(objects), **OURS, adopt_guide_objects=False, git_device_plugin="suspend").refused
    assert "Flux Kustomization flux-system/nvidia-device-plugin cannot be suspended here: its spec.suspend is set in Git" in refused


def test_a_kustomization_already_suspended_is_left_as_it_is(documents) -> None:
    objects = [kustomization(KS[1], suspend=True), *flux_device_plugin(*documents, KS)]
    plan = plan_removal(cluster_facts(objects), **OURS, adopt_guide_objects=False, git_device_plugin="suspend")
    assert [removal.action for removal in plan.removals] == ["uninstall"]
    assert "Flux Kustomization flux-system/nvidia-device-plugin is suspended already" in plan.notes


def test_a_stale_kustomization_label_is_no_claim(documents) -> None:
    """The label names a Kustomization that no longer exists: nothing applies it again."""
    plan = plan_removal(cluster_facts(flux_device_plugin(*documents, KS)), **OURS, adopt_guide_objects=True)
    assert plan.refused == [] and "hand-made Flux HelmRelease of chart nvidia-device-plugin, adopted" in plan.removals[0].why


def test_the_guides_hand_made_helmrelease_is_refused_unless_adopted(documents) -> None:
    release, repository = copy.deepcopy(documents)
    for document in (release, repository):
        document["metadata"]["namespace"] = "kube-system"  # the guide's
    objects = flux_device_plugin(release, repository, "hand")
    [refused] = plan_removal(cluster_facts(objects), **OURS, adopt_guide_objects=False).refused
    assert refused.startswith("HelmRelease kube-system/nvidia-device-plugin (Flux HelmRelease of chart nvidia-device-plugin) was not made by this program")
    assert "gpuStack.adoptGuideObjects: true" in refused and "`kubectl delete helmrelease -n kube-system nvidia-device-plugin`" in refused
    adopted = plan_removal(cluster_facts(objects), **OURS, adopt_guide_objects=True)
    assert lines(adopted) == ["remove HelmRelease kube-system/nvidia-device-plugin (hand-made Flux HelmRelease of chart nvidia-device-plugin, "
                              "adopted; helm-controller uninstalls the chart, waited for until its objects are gone)"], "its repository is not ours"
    # Same name and namespace as ours, but not made by Pulumi: still the guide's.
    [refused] = plan_removal(cluster_facts(flux_device_plugin(*documents, "hand")), **OURS, adopt_guide_objects=False).refused
    assert "was not made by this program" in refused


def test_a_helmrelease_with_a_chart_ref_is_found_by_the_helm_release_it_installed(documents) -> None:
    objects = own(documents)
    release = next(obj for obj in objects if obj["kind"] == "HelmRelease")
    del release["spec"]["chart"]  # chartRef to an OCIRepository, no history (installed: helm-controller keeps storageNamespace)
    release["status"] = {"storageNamespace": release["status"]["storageNamespace"]}
    release["spec"]["chartRef"] = {"kind": "OCIRepository", "name": "nvdp-oci"}
    plan = plan_removal(cluster_facts(objects), **OURS, adopt_guide_objects=False)
    assert [removal.ref.line() for removal in plan.removals] == ["HelmRelease gpu-operator/nvidia-device-plugin"]
    # Only the labels helm-controller puts on the objects link them (the record is elsewhere).
    release["spec"]["releaseName"] = "renamed"
    assert [removal.ref.line() for removal in plan_removal(cluster_facts(objects), **OURS, adopt_guide_objects=False).removals] == [
        "HelmRelease gpu-operator/nvidia-device-plugin"]


def test_a_suspended_helmrelease_goes_with_its_release_removed_here(documents) -> None:
    objects = own(documents)
    next(obj for obj in objects if obj["kind"] == "HelmRelease")["spec"]["suspend"] = True
    plan = plan_removal(cluster_facts(objects), **OURS, adopt_guide_objects=False)
    removed = lines(plan)
    assert "suspended, so helm-controller lets it go without uninstalling the chart" in removed[0]
    assert removed[1].startswith("remove DaemonSet gpu-operator/nvidia-device-plugin (object of Helm release")
    assert "remove Secret gpu-operator/sh.helm.release.v1.nvidia-device-plugin.v1 (Helm's record of Helm release gpu-operator/nvidia-device-plugin " \
           "(chart nvidia-device-plugin))" in removed


def test_helm_release_names_follow_helm_controller() -> None:
    assert helm_release_name("podinfo", None, None) == "podinfo"
    assert helm_release_name("podinfo", "apps", None) == "apps-podinfo"
    assert helm_release_name("podinfo", "apps", "mine") == "mine"
    # helm-controller v1.6.3 internal/release/name_test.go (its docs' example keeps 42 characters, the code 40).
    for name, short in (("release-name-with-very-long-name-which-is-longer-than-53-characters", "release-name-with-very-long-name-which-i-788ca0d0d7b0"),
                        ("another-release-name-with-very-long-name-which-is-longer-than-53-characters",
                         "another-release-name-with-very-long-name-7e72150d5a36")):
        assert helm_release_name("x", None, name) == short


# -- the provider, the engine's way -------------------------------------------


@pytest.fixture
def migration(homelab) -> tuple[str, dict]:
    homelab["gpuStack"]["delivery"] = "flux"
    run, _ = run_node(homelab)
    provider, props = registration(run, MIGRATION)
    return provider, {**props, "pollSeconds": 0.05}


def mutations(kube: FakeKubectl) -> list[list[str]]:
    return [call["argv"] for call in kube.calls() if call["mutated"]]


def verbs(kube: FakeKubectl) -> set[str]:
    return {call["argv"][2] if call["argv"][0] == "--kubeconfig" else call["argv"][0] for call in kube.calls()}


def test_preview_lists_the_flux_removals_in_order_and_changes_nothing(migration, documents, fake_kubectl: FakeKubectl,
                                                                       fake_talosctl: FakeTalosctl) -> None:
    fake_kubectl.install_flux()
    fake_kubectl.objects([*own(documents), runtime_class(OUR_CLASS), node()])
    provider, props = migration
    assert props["fluxObjects"] == "pulumi" and props["gitDevicePlugin"] == "refuse" and props["stack"] == "test"
    checked = engine(provider, "check", props, fake_talosctl.env())["ok"]
    pending = checked["inputs"]["pendingChanges"]
    assert [line.split(" (")[0] for line in pending if line.startswith("remove ")] == [
        "remove HelmRelease gpu-operator/nvidia-device-plugin", "remove HelmRepository gpu-operator/nvdp", "remove RuntimeClass nvidia"]
    assert engine(provider, "diff", checked["inputs"], fake_talosctl.env(), olds=props)["ok"]["changes"] is True
    assert mutations(fake_kubectl) == [] and verbs(fake_kubectl) == {"get"}, "preview only reads"


def test_up_deletes_this_programs_helmrelease_and_the_device_plugin_stays_removed(migration, documents, fake_kubectl: FakeKubectl,
                                                                                  fake_talosctl: FakeTalosctl) -> None:
    fake_kubectl.install_flux()
    fake_kubectl.objects([*own(documents), runtime_class(OUR_CLASS), node()])
    provider, props = migration
    result = engine(provider, "create", props, fake_talosctl.env())
    assert "ok" in result, result
    assert result["ok"]["outs"]["removed"] == ["HelmRelease gpu-operator/nvidia-device-plugin", "HelmRepository gpu-operator/nvdp", "RuntimeClass nvidia"]
    assert "[gpu-mode-migration] HelmRelease gpu-operator/nvidia-device-plugin is gone, its chart uninstalled" in result["stderr"]
    assert any("helm-controller: uninstalled gpu-operator/nvidia-device-plugin" in event for call in fake_kubectl.calls() for event in call["reconciled"])
    fake_kubectl.settle()
    left = {(obj["kind"], obj["metadata"]["name"]) for obj in fake_kubectl.objects()}
    assert left == {("Node", "moody-good")}, f"the device plugin came back or stayed: {left}"
    assert [argv[argv.index("delete") + 1] for argv in mutations(fake_kubectl) if "delete" in argv] == [
        "helmreleases.helm.toolkit.fluxcd.io", "helmrepositories.source.toolkit.fluxcd.io", "RuntimeClass"]
    again = engine(provider, "create", props, fake_talosctl.env())["ok"]["outs"]
    assert again["removed"] == [] and again["message"].startswith("nothing to remove")


def test_the_stand_in_puts_back_what_a_removal_of_the_helm_objects_alone_deletes(documents, fake_kubectl: FakeKubectl) -> None:
    """What the migration did before it knew Flux: delete the release's objects
    (and records). helm-controller puts them back while the HelmRelease exists."""
    fake_kubectl.install_flux()
    fake_kubectl.objects(own(documents))
    for kind, name in (("daemonset", "nvidia-device-plugin"), ("secret", "sh.helm.release.v1.nvidia-device-plugin.v1")):
        assert fake_kubectl.kubectl("delete", kind, name, "-n", "gpu-operator").returncode == 0
    fake_kubectl.settle(1)
    assert fake_kubectl.has("DaemonSet", "nvidia-device-plugin"), "reinstalled: Helm's record was gone"
    assert fake_kubectl.kubectl("delete", "daemonset", "nvidia-device-plugin", "-n", "gpu-operator").returncode == 0
    fake_kubectl.settle(1)
    assert fake_kubectl.has("DaemonSet", "nvidia-device-plugin"), "drift detection put it back"


def test_up_refuses_a_helmrelease_from_git_deletes_nothing_and_goes_once_git_no_longer_has_it(migration, documents, fake_kubectl: FakeKubectl,
                                                                                                 fake_talosctl: FakeTalosctl) -> None:
    objects = from_git(documents)
    fake_kubectl.install_flux(git={KS: [obj for obj in objects if obj["kind"] in ("HelmRepository", "HelmRelease", "RuntimeClass")]})
    fake_kubectl.objects([*objects, node()])
    fake_kubectl.settle(1)
    provider, props = migration
    result = engine(provider, "create", {**props, "fluxObjects": "git"}, fake_talosctl.env())
    assert result["error"] == "MigrationRefused", result
    assert "applied from Git by Flux Kustomization flux-system/nvidia-device-plugin" in result["message"]
    assert "`python -m components.render --stack test --flux DIR`" in result["message"]
    assert mutations(fake_kubectl) == [], "nothing is deleted when something is refused"
    # The user removes them from Git; Flux prunes them and helm-controller uninstalls the chart.
    fake_kubectl.git({KS: []})
    fake_kubectl.settle(2)
    assert not fake_kubectl.has("HelmRelease", "nvidia-device-plugin") and not fake_kubectl.has("DaemonSet", "nvidia-device-plugin")
    outs = engine(provider, "create", {**props, "fluxObjects": "git"}, fake_talosctl.env())["ok"]["outs"]
    assert outs["removed"] == [] and outs["message"].startswith("nothing to remove")


def test_up_with_suspend_suspends_the_kustomization_and_the_removal_lasts(migration, documents, fake_kubectl: FakeKubectl,
                                                                          fake_talosctl: FakeTalosctl) -> None:
    objects = from_git(documents)
    fake_kubectl.install_flux(git={KS: [obj for obj in objects if obj["kind"] in ("HelmRepository", "HelmRelease", "RuntimeClass")]})
    fake_kubectl.objects([*objects, node()])
    provider, props = migration
    result = engine(provider, "create", {**props, "fluxObjects": "git", "gitDevicePlugin": "suspend"}, fake_talosctl.env())
    assert "ok" in result, result
    assert result["ok"]["outs"]["suspended"] == ["Kustomization flux-system/nvidia-device-plugin"]
    assert "stays suspended" in result["stderr"]
    [patch] = [argv for argv in mutations(fake_kubectl) if "patch" in argv]
    assert patch[patch.index("patch") + 1:patch.index("patch") + 3] == ["kustomizations.kustomize.toolkit.fluxcd.io", "nvidia-device-plugin"]
    assert "--field-manager=flux-client-side-apply" in patch and "--type=merge" in patch
    fake_kubectl.settle()
    assert fake_kubectl.get("Kustomization", "nvidia-device-plugin")["spec"]["suspend"] is True
    for kind, name in (("HelmRelease", "nvidia-device-plugin"), ("DaemonSet", "nvidia-device-plugin"), ("RuntimeClass", "nvidia")):
        assert not fake_kubectl.has(kind, name), f"{kind} {name} came back"
    assert fake_kubectl.has("HelmRepository", "nvdp"), "Git's HelmRepository is left to Git"


def test_up_refuses_the_guides_helmrelease_and_removes_it_when_adopted(migration, documents, fake_kubectl: FakeKubectl,
                                                                        fake_talosctl: FakeTalosctl) -> None:
    fake_kubectl.install_flux()
    fake_kubectl.objects([*flux_device_plugin(*documents, "hand"), node()])
    provider, props = migration
    result = engine(provider, "create", props, fake_talosctl.env())
    assert result["error"] == "MigrationRefused" and "HelmRelease gpu-operator/nvidia-device-plugin" in result["message"]
    assert "gpuStack.adoptGuideObjects: true" in result["message"] and mutations(fake_kubectl) == []
    assert "ok" in engine(provider, "create", {**props, "adoptGuideObjects": True}, fake_talosctl.env())
    fake_kubectl.settle()
    assert not fake_kubectl.has("HelmRelease", "nvidia-device-plugin") and not fake_kubectl.has("DaemonSet", "nvidia-device-plugin")
    assert fake_kubectl.has("HelmRepository", "nvdp"), "the guide's repository is not this program's"


def test_an_uninstall_that_does_not_happen_stops_bounded_and_says_where_to_look(migration, documents, fake_kubectl: FakeKubectl,
                                                                                 fake_talosctl: FakeTalosctl) -> None:
    fake_kubectl.install_flux()
    fake_kubectl.objects([*own(documents), runtime_class(OUR_CLASS), node()])
    fake_kubectl.stop("helm-controller")
    provider, props = migration
    result = engine(provider, "create", {**props, "uninstallTimeoutSeconds": 1, "pollSeconds": 0.2}, fake_talosctl.env())
    assert result["error"] == "UninstallTimedOut", result
    assert result["message"].startswith("helm-controller did not uninstall HelmRelease gpu-operator/nvidia-device-plugin within 1 s: "
                                        "HelmRelease gpu-operator/nvidia-device-plugin, DaemonSet gpu-operator/nvidia-device-plugin")
    assert "`flux logs --kind=HelmRelease --name=nvidia-device-plugin -n gpu-operator`" in result["message"]
    assert "waiting for helm-controller to uninstall HelmRelease gpu-operator/nvidia-device-plugin" in result["stderr"]
    assert fake_kubectl.has("RuntimeClass", "nvidia"), "nothing after the HelmRelease was touched"
