"""`gpuStack.delivery: flux` under Pulumi's mock engine: the Flux objects'
types and apiVersions, values equal to the Helm delivery's, the same
dependency edges as the Helm release, every Kubernetes resource on the
stack's provider, nothing created before the Flux check; non-owner and
objects-from-Git stacks add only their own entry and label; the mode
migration, then the step to Talos 1.13, then the operator's HelmRelease."""

from __future__ import annotations

import pytest

from components.config import OWNER_ONLY_KEYS
from tests.conftest import created_config, run_main, stack_file_config
from tests.flux.crds import assert_valid
from tools.mockengine import ProgramRun, Registration, is_secret, reveal

HELM_REPOSITORY = "kubernetes:source.toolkit.fluxcd.io/v1:HelmRepository"
HELM_RELEASE = "kubernetes:helm.toolkit.fluxcd.io/v2:HelmRelease"
PREFLIGHT = "pulumi-python:dynamic/flux:FluxPreflight"
GATE = "pulumi-python:dynamic/readiness:GpuReadinessGate"
RELEASE = "kubernetes:helm.sh/v3:Release"
NAMESPACE = "kubernetes:core/v1:Namespace"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
CONFIG_MAP_PATCH = "kubernetes:core/v1:ConfigMapPatch"
NODE_PATCH = "kubernetes:core/v1:NodePatch"
RUNTIME_CLASS = "kubernetes:node.k8s.io/v1:RuntimeClass"
VM = "proxmoxve:index/vmLegacy:VmLegacy"
MIGRATION = "pulumi-python:dynamic/migration:GpuModeMigration"
UPGRADE = "pulumi-python:dynamic/talos:TalosUpgrade"


def config(**gpu_stack) -> dict:
    # vm.source: create, so the VM is one VmLegacy whose place in the graph is checked.
    raw = created_config()
    if gpu_stack.get("mode") == "devicePlugin":
        raw["talos"]["version"] = "v1.11.6"
    raw["gpuStack"].update(gpu_stack)
    return raw


def non_owner(**gpu_stack) -> dict:
    raw = config(ownsClusterObjects=False, **gpu_stack)
    for key in OWNER_ONLY_KEYS:  # refused in a non-owner stack
        raw["gpuStack"].pop(key, None)
    raw["vm"].update(vmId=1106, name="moody-bad")
    raw["gpus"][0]["address"] = "0000:af:00.0"
    return raw


@pytest.fixture(scope="module")
def helm_run() -> ProgramRun:
    return run_main(config())


@pytest.fixture(scope="module")
def flux_run() -> ProgramRun:
    return run_main(config(delivery="flux"))


@pytest.fixture(scope="module")
def plugin_runs() -> tuple[ProgramRun, ProgramRun]:
    return run_main(config(mode="devicePlugin")), run_main(config(mode="devicePlugin", delivery="flux"))


def _document(reg: Registration) -> dict:
    inputs = reveal(reg.inputs)
    return {key: inputs[key] for key in ("apiVersion", "kind", "metadata", "spec")}


def test_flux_delivery_registers_flux_objects_instead_of_the_helm_release(flux_run):
    assert flux_run.by_type(RELEASE) == [], "no Helm release next to the HelmRelease: one owner"
    repository, release = flux_run.one(HELM_REPOSITORY), flux_run.one(HELM_RELEASE)
    assert (repository.inputs["apiVersion"], repository.inputs["kind"]) == ("source.toolkit.fluxcd.io/v1", "HelmRepository"), repository.urn
    assert (release.inputs["apiVersion"], release.inputs["kind"]) == ("helm.toolkit.fluxcd.io/v2", "HelmRelease"), release.urn
    assert repository.inputs["spec"] == {"type": "default", "url": "https://helm.ngc.nvidia.com/nvidia", "interval": "1h"}, f"{repository.urn}: README row 12"
    for reg in (repository, release):
        assert_valid(_document(reg), reg.urn)
        assert reg.inputs["metadata"]["namespace"] == "gpu-operator", reg.urn
    for type_ in (NAMESPACE, CONFIG_MAP, NODE_PATCH):
        assert flux_run.one(type_), type_


def test_helm_release_values_equal_the_helm_deliverys(helm_run, flux_run):
    helm, flux = helm_run.one(RELEASE), flux_run.one(HELM_RELEASE)
    spec = reveal(flux.inputs["spec"])
    assert spec["values"] == reveal(helm.inputs["values"]), f"{flux.urn} vs {helm.urn}"
    assert (spec["chart"]["spec"]["chart"], spec["chart"]["spec"]["version"]) == (helm.inputs["chart"], helm.inputs["version"]), flux.urn
    assert spec["releaseName"] == helm.inputs["name"] and flux.inputs["metadata"]["name"] == helm.inputs["name"], flux.urn
    assert reveal(flux_run.one(CONFIG_MAP).inputs) == reveal(helm_run.one(CONFIG_MAP).inputs)


def test_device_plugin_flux_release_has_the_helm_values_and_waits_for_the_runtime_class(plugin_runs):
    helm_run, flux_run = plugin_runs
    release, runtime_class = flux_run.one(HELM_RELEASE), flux_run.one(RUNTIME_CLASS)
    assert reveal(release.inputs["spec"])["values"] == reveal(helm_run.one(RELEASE).inputs["values"]), release.urn
    assert flux_run.one(HELM_REPOSITORY).inputs["spec"]["url"] == "https://nvidia.github.io/k8s-device-plugin"
    assert flux_run.depends_on(release, runtime_class), f"{release.urn}: as the Helm release (README row 15)"
    assert_valid(_document(release), release.urn)


@pytest.mark.parametrize("type_", [CONFIG_MAP, NAMESPACE, VM])
def test_helm_release_has_the_helm_releases_dependencies(helm_run, flux_run, type_):
    assert helm_run.depends_on(helm_run.one(RELEASE), helm_run.one(type_)), "the Helm delivery's edge"
    assert flux_run.depends_on(flux_run.one(HELM_RELEASE), flux_run.one(type_)), f"{HELM_RELEASE} must wait for {type_}"


def test_helm_release_waits_for_its_repository_and_destroy_removes_it_first(flux_run):
    release, repository, namespace = flux_run.one(HELM_RELEASE), flux_run.one(HELM_REPOSITORY), flux_run.one(NAMESPACE)
    assert flux_run.depends_on(release, repository) and flux_run.depends_on(repository, namespace), release.urn
    for reg in (release, repository):
        # Deleted by `pulumi destroy`, dependents first: the HelmRelease (whose
        # finalizer uninstalls the chart) before its repository and namespace.
        assert reg.retain_on_delete is None and reg.protect is False, reg.urn
    assert release.custom_timeouts == {"create": "20m", "update": "20m", "delete": "20m"}, f"{release.urn}: Flux may take 15 m to uninstall"


def test_node_label_and_gate_wait_as_in_helm_delivery(flux_run):
    label, gate = flux_run.one(NODE_PATCH), flux_run.one(GATE)
    assert flux_run.depends_on(label, flux_run.one(CONFIG_MAP)), label.urn
    assert flux_run.depends_on(gate, flux_run.one(HELM_RELEASE)) and flux_run.depends_on(gate, label), gate.urn
    assert reveal(gate.inputs)["helmRelease"] == {"namespace": "gpu-operator", "name": "gpu-operator"}, gate.urn


def test_helm_delivery_gate_waits_for_no_helm_release(helm_run):
    assert reveal(helm_run.one(GATE).inputs).get("helmRelease") is None


def test_every_kubernetes_resource_is_on_the_stacks_provider(flux_run):
    provider = flux_run.one("pulumi:providers:kubernetes")
    kubernetes = [reg for reg in flux_run.registrations if reg.type.startswith("kubernetes:")]
    assert {reg.type for reg in kubernetes} == {NAMESPACE, CONFIG_MAP, NODE_PATCH, HELM_REPOSITORY, HELM_RELEASE}
    for reg in kubernetes:
        assert reg.provider_urn == provider.urn, f"{reg.urn} would use ambient credentials, not the stack's kubeconfig"


@pytest.mark.parametrize("mode", ["operator", "devicePlugin"])
def test_nothing_is_created_before_the_flux_check(flux_run, plugin_runs, mode):
    run = flux_run if mode == "operator" else plugin_runs[1]
    preflight = run.one(PREFLIGHT)
    assert is_secret(preflight.inputs["kubeconfig"]), f"{preflight.urn}: kubeconfig must stay secret"
    assert "kubeconfig" in preflight.additional_secret_outputs, preflight.urn
    assert run.depends_on(preflight, run.one(VM)), f"{preflight.urn} runs after the node exists"
    for reg in run.registrations:
        if reg.type.startswith("kubernetes:"):
            assert run.depends_on(reg, preflight), f"{reg.urn} must wait for the Flux check"


def test_helm_delivery_registers_no_flux_check(helm_run):
    assert helm_run.by_type(PREFLIGHT) == [] and helm_run.by_type(HELM_RELEASE) == []


def test_non_owner_in_flux_delivery_only_adds_its_entry_and_label():
    run = run_main(non_owner(delivery="flux"))
    for type_ in (NAMESPACE, CONFIG_MAP, RELEASE, HELM_REPOSITORY, HELM_RELEASE, RUNTIME_CLASS):
        assert run.by_type(type_) == [], f"a non-owner stack must not create {type_}"
    patch, label, preflight = run.one(CONFIG_MAP_PATCH), run.one(NODE_PATCH), run.one(PREFLIGHT)
    assert list(patch.inputs["data"]) == ["moody-bad"], patch.urn
    assert patch.inputs["metadata"]["annotations"]["pulumi.com/patchFieldManager"] == "proxmox-talos-gpu-moody-bad", patch.urn
    assert run.depends_on(label, patch) and run.depends_on(patch, preflight), label.urn
    gate = run.one(GATE)
    assert reveal(gate.inputs)["helmRelease"] == {"namespace": "gpu-operator", "name": "gpu-operator"}, f"{gate.urn}: the owner's HelmRelease"


@pytest.mark.parametrize("owner", [True, False])
def test_objects_from_git_leaves_the_cluster_objects_to_flux(owner):
    raw = (config if owner else non_owner)(delivery="flux", flux={**stack_file_config()["gpuStack"]["flux"], "objects": "git"})
    run = run_main(raw)
    kubernetes = [reg.type for reg in run.registrations if reg.type.startswith("kubernetes:")]
    assert kubernetes == [NODE_PATCH], "namespace, ConfigMap entries and Flux objects come from Git"
    assert run.depends_on(run.one(NODE_PATCH), run.one(PREFLIGHT))
    assert reveal(run.one(GATE).inputs)["helmRelease"] == {"namespace": "gpu-operator", "name": "gpu-operator"}


def _walk(run: ProgramRun) -> tuple[Registration, Registration, Registration]:
    """The walk to the last 1.12, the mode migration, the step to 1.13."""
    [before] = [reg for reg in run.by_type(UPGRADE) if reg.name.endswith("-upgrade-before-1.13")]
    [step] = [reg for reg in run.by_type(UPGRADE) if reg.name.endswith("-talos-upgrade")]
    return before, run.one(MIGRATION), step


def test_flux_delivery_removes_the_device_plugin_then_steps_to_1_13_then_creates_the_operators_helmrelease(flux_run):
    before, migration, step = _walk(flux_run)
    release = flux_run.one(HELM_RELEASE)
    assert flux_run.depends_on(migration, before) and flux_run.depends_on(step, migration), "migration between the walk to 1.12 and the step to 1.13"
    assert flux_run.depends_on(release, step) and flux_run.depends_on(release, migration), f"{release.urn} only after the node runs 1.13"
    assert not flux_run.depends_on(migration, release) and not flux_run.depends_on(step, release)
    assert reveal(release.inputs)["spec"]["chart"]["spec"]["chart"] == "gpu-operator"
    # Nothing in the update creates again what the migration removes.
    registered = {(reg.type, reveal(reg.inputs)["metadata"]["name"]) for reg in flux_run.registrations if reg.type.startswith("kubernetes:")}
    assert (HELM_RELEASE, "nvidia-device-plugin") not in registered and (HELM_REPOSITORY, "nvdp") not in registered
    assert not any(type_ == RUNTIME_CLASS for type_, _ in registered), "the operator makes its own RuntimeClass (README row 15)"
    # The migration reads the cluster the Kubernetes resources are created in, its kubeconfig secret.
    provider = flux_run.one("pulumi:providers:kubernetes")
    assert is_secret(migration.inputs["kubeconfig"]) and reveal(migration.inputs["kubeconfig"]) == reveal(provider.inputs["kubeconfig"])
    assert reveal(migration.inputs)["fluxObjects"] == "pulumi" and reveal(migration.inputs)["gitDevicePlugin"] == "refuse"
    for reg in flux_run.registrations:
        if reg.type.startswith("kubernetes:"):
            assert reg.provider_urn == provider.urn, f"{reg.urn} would use ambient credentials, not the stack's kubeconfig"
            assert flux_run.depends_on(reg, step), f"{reg.urn} must wait for the step to 1.13"


def test_objects_from_git_gate_waits_for_the_step_to_1_13_after_the_migration():
    flux = {**stack_file_config()["gpuStack"]["flux"], "objects": "git", "gitDevicePlugin": "suspend"}
    run = run_main(config(delivery="flux", flux=flux))
    before, migration, step = _walk(run)
    assert run.depends_on(step, migration) and run.depends_on(migration, before)
    assert run.depends_on(run.one(GATE), step) and run.depends_on(run.one(NODE_PATCH), step)
    assert reveal(migration.inputs)["fluxObjects"] == "git" and reveal(migration.inputs)["gitDevicePlugin"] == "suspend"
