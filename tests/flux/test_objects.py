"""The Flux object builders: every object validates against the vendored Flux
CRDs, carries the Helm delivery's chart, version and values, and the guide's
Flux objects are refused by the same validation (README row 26)."""

from __future__ import annotations

import copy

import pytest
import yaml

from components import cluster
from components.config import ConfigError, parse_stack_config
from components.flux import objects
from tests.conftest import stack_file_config
from tests.flux.crds import assert_valid, cel_holds, problems


def _cfg(**gpu_stack):
    raw = copy.deepcopy(stack_file_config())
    if gpu_stack.get("mode") == "devicePlugin":
        raw["talos"]["version"] = "v1.11.6"
    raw["gpuStack"].update(gpu_stack)
    return parse_stack_config(raw)


VARIANTS = {
    "operator": {},
    "operator, prometheus, renamed sharing, 8 replicas": {"prometheusOperator": True, "timeSlicing": {"renameByDefault": True, "replicas": 8}},
    "device plugin on Talos 1.11": {"mode": "devicePlugin"},
    "sharing off": {"timeSlicing": {"enabled": False}},
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_flux_object_validates_against_the_crds(variant):
    cfg = _cfg(**VARIANTS[variant])
    for document in (objects.helm_repository(cfg), objects.helm_release(cfg), objects.flux_kustomization(cfg)):
        assert_valid(document, f"{variant}: {document['kind']}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_release_carries_the_helm_deliverys_chart_and_values(variant):
    cfg = _cfg(**VARIANTS[variant])
    chart, release = cluster.helm_chart(cfg), objects.helm_release(cfg)
    spec = release["spec"]
    assert spec["values"] == chart.values, variant
    assert (spec["chart"]["spec"]["chart"], spec["chart"]["spec"]["version"], spec["releaseName"]) == (chart.chart, chart.version, chart.release_name)
    repository = objects.helm_repository(cfg)
    assert spec["chart"]["spec"]["sourceRef"] == {"kind": "HelmRepository", "name": repository["metadata"]["name"]}
    assert repository["metadata"]["namespace"] == release["metadata"]["namespace"] == cfg.gpu_stack.namespace
    assert repository["spec"]["url"] == chart.repo and repository["spec"]["type"] == "default"


def test_operator_chart_comes_from_ngcs_http_repository_not_oci():
    repository = objects.helm_repository(_cfg())
    assert repository["spec"] == {"type": "default", "url": "https://helm.ngc.nvidia.com/nvidia", "interval": "1h"}, "README row 12"
    assert repository["apiVersion"] == "source.toolkit.fluxcd.io/v1" and repository["metadata"]["name"] == "nvidia"
    values = objects.helm_release(_cfg())["spec"]["values"]
    assert "validator" not in values and "operator" not in values, "dead keys (README row 11)"


def test_device_plugin_chart_comes_from_nvidias_pages_repository():
    cfg = _cfg(mode="devicePlugin")
    repository, release = objects.helm_repository(cfg), objects.helm_release(cfg)
    assert repository["spec"]["url"] == "https://nvidia.github.io/k8s-device-plugin" and repository["metadata"]["name"] == "nvdp"
    assert release["metadata"]["name"] == "nvidia-device-plugin" and release["spec"]["chart"]["spec"]["version"] == "0.18.2"
    assert release["spec"]["values"]["runtimeClassName"] == "nvidia"


def test_release_remediates_and_waits_as_long_as_the_helm_delivery():
    spec = objects.helm_release(_cfg())["spec"]
    assert spec["timeout"] == "15m", "the Helm delivery waits 900 s for the operator"
    assert spec["install"]["remediation"] == {"retries": 3}
    assert spec["upgrade"]["remediation"] == {"retries": 3, "strategy": "rollback", "remediateLastFailure": True}
    assert spec["install"]["crds"] == spec["upgrade"]["crds"] == "CreateReplace"
    assert spec["driftDetection"] == {"mode": "enabled"}


def test_kustomization_reads_the_configured_git_repository_and_path():
    ks = objects.flux_kustomization(_cfg())
    assert ks["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
    assert ks["metadata"] == {"name": "nvidia-gpu", "namespace": "flux-system"}
    assert ks["spec"]["sourceRef"] == {"kind": "GitRepository", "name": "profmoo-home"}
    assert ks["spec"]["path"] == "./kubernetes/homelab/apps/base/nvidia-gpu-operator/app"
    assert ks["spec"]["prune"] is True and ks["spec"]["wait"] is True


def test_the_kustomization_keeps_its_name_across_the_mode_switch():
    """From the device plugin to the operator only app/ changes: Flux prunes
    the dropped files. A renamed Kustomization would be pruned whole by its
    parent, namespace included, while the new one applies it."""
    plugin, operator = objects.flux_kustomization(_cfg(mode="devicePlugin")), objects.flux_kustomization(_cfg())
    assert plugin["metadata"] == operator["metadata"] == {"name": "nvidia-gpu", "namespace": "flux-system"}


def test_kustomization_without_a_path_names_the_key():
    raw = copy.deepcopy(stack_file_config())
    del raw["gpuStack"]["flux"]["path"]
    with pytest.raises(ConfigError) as caught:
        objects.flux_kustomization(parse_stack_config(raw))
    assert "proxmox-talos-gpu:gpuStack.flux.path = None: required for render --flux" in str(caught.value)


GUIDE_OCI_REPOSITORY = """
apiVersion: source.toolkit.fluxcd.io/v1beta2
kind: OCIRepository
metadata: {name: gpu-operator, namespace: flux-system}
spec:
  interval: 12h
  url: oci://ghcr.io/nvidia/gpu-operator
  ref: {tag: v25.10.1}
"""


def test_the_guides_oci_repository_is_not_served_by_current_flux():
    """OCIRepository v1beta2 (the guide) is gone; v1 validates (README row 26)."""
    guide = yaml.safe_load(GUIDE_OCI_REPOSITORY)
    assert problems(guide) == ["apiVersion 'source.toolkit.fluxcd.io/v1beta2': ocirepositories.source.toolkit.fluxcd.io serves only v1"]
    assert problems({**guide, "apiVersion": "source.toolkit.fluxcd.io/v1"}) == []


def test_validation_refuses_misspelt_fields_and_broken_cel_rules():
    """Guards the validation the other tests rely on: it must be able to fail."""
    release = objects.helm_release(_cfg())
    misspelt = copy.deepcopy(release)
    misspelt["spec"]["upgrade"]["remediation"]["retry"] = 3
    assert problems(misspelt) == ["spec.upgrade.remediation: Additional properties are not allowed ('retry' was unexpected)"]
    both = copy.deepcopy(release)
    both["spec"]["chartRef"] = {"kind": "OCIRepository", "name": "gpu-operator"}
    assert problems(both) == ["spec: either chart or chartRef must be set"]
    http_as_oci = objects.helm_repository(_cfg())
    http_as_oci["spec"]["type"] = "helm"
    assert problems(http_as_oci) and "'helm' is not one of ['default', 'oci']" in problems(http_as_oci)[0]
    assert problems({**release, "apiVersion": "helm.toolkit.fluxcd.io/v2beta2"})[0].endswith("serves only v2")


def test_cel_subset_evaluates_and_refuses_what_it_cannot_read():
    rule = "!has(self.retryInterval) || self.name == 'RetryOnFailure'"
    assert cel_holds(rule, {"name": "RetryOnFailure", "retryInterval": "5m"})
    assert not cel_holds(rule, {"name": "RemediateOnFailure", "retryInterval": "5m"})
    assert cel_holds(rule, {"name": "RemediateOnFailure"})
    with pytest.raises(ValueError, match="supported subset"):
        cel_holds("self.items.size() > 0", {})
