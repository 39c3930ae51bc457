"""The cluster-side plan against upstream data: every Helm values key the
program sets exists in the chart; the time-slicing config has the schema the
device plugin accepts (README, "What the guide gets wrong", rows 10, 11, 14)."""

from __future__ import annotations

import pytest
import yaml

from components import cluster
from components.config import parse_stack_config
from tests.conftest import reference


def _has_path(tree: dict, path: str) -> bool:
    node = tree
    for part in path.split("."):
        if node == {}:
            return True  # a free-form map the chart leaves empty (e.g. serviceMonitor.additionalLabels)
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@pytest.mark.parametrize("chart_version", ["v26.7.0"])
@pytest.mark.parametrize("prometheus, mig", [(False, False), (True, True)])
def test_every_operator_values_key_exists_in_the_chart(homelab, chart_version, prometheus, mig):
    chart_values = yaml.safe_load(reference("gpu-operator", f"values.{chart_version}.yaml").read_text())
    homelab["gpuStack"]["prometheusOperator"] = prometheus
    homelab["gpus"][0]["mig"] = mig
    values = cluster.operator_values(parse_stack_config(homelab))
    missing = [path for path in cluster.value_key_paths(values) if not _has_path(chart_values, path)]
    assert missing == [], f"keys the gpu-operator {chart_version} chart does not have (Helm would ignore them): {missing}"


def test_the_guides_dead_keys_are_really_absent_from_the_chart():
    """Guards the check above: it must be able to fail on the guide's values."""
    for version in ("v25.10.1", "v26.7.0"):
        chart_values = yaml.safe_load(reference("gpu-operator", f"values.{version}.yaml").read_text())
        assert not _has_path(chart_values, "validator.enabled"), version
        assert not _has_path(chart_values, "operator.defaultRuntime"), version


def test_value_key_paths_lists_leaves():
    assert cluster.value_key_paths({"a": {"b": 1, "c": {"d": False}}, "e": []}) == ["a.b", "a.c.d", "e"]
    assert cluster.value_key_paths({}) == [] and cluster.value_key_paths({"a": {}}) == ["a"]


def _validate_plugin_config(config: dict) -> None:
    """The rules of NVIDIA/k8s-device-plugin api/config/v1 (replicas.go):
    version v1; timeSlicing needs a non-empty `resources` list whose entries
    name a resource and ask for replicas >= 2; no `replicas` at the top."""
    assert config["version"] == "v1"
    sharing = config.get("sharing", {}).get("timeSlicing")
    if sharing is None:
        return
    assert set(sharing) <= {"renameByDefault", "failRequestsGreaterThanOne", "resources"}, sharing
    assert sharing["resources"], "no resources specified"
    for resource in sharing["resources"]:
        assert set(resource) <= {"name", "replicas", "rename", "devices"}, resource
        assert resource["name"] == "nvidia.com/gpu"
        assert isinstance(resource["replicas"], int) and resource["replicas"] >= 2


def test_time_slicing_config_has_the_plugin_schema(homelab):
    text = cluster.device_plugin_config_yaml(parse_stack_config(homelab))
    config = yaml.safe_load(text)
    _validate_plugin_config(config)
    assert config["sharing"]["timeSlicing"]["resources"] == [{"name": "nvidia.com/gpu", "replicas": 4}]


def test_the_guides_time_slicing_config_fails_the_schema_check():
    guide = {"version": "v1", "sharing": {"timeSlicing": {"replicas": 4, "failRequestsGreaterThanOne": False}}}
    with pytest.raises(AssertionError):
        _validate_plugin_config(guide)


def test_sharing_off_writes_no_time_slicing(homelab):
    homelab["gpuStack"]["timeSlicing"] = {"enabled": False}
    config = cluster.device_plugin_config(parse_stack_config(homelab))
    assert "sharing" not in config and config["flags"]["migStrategy"] == "none"


@pytest.mark.parametrize(("enabled", "rename", "advertised"), [
    (True, False, "nvidia.com/gpu"),
    (True, True, "nvidia.com/gpu.shared"),
    # Without time-slicing the plugin's config has no sharing section, so
    # renameByDefault renames nothing.
    (False, True, "nvidia.com/gpu"),
    (False, False, "nvidia.com/gpu"),
])
def test_the_advertised_resource_is_renamed_only_when_time_slicing_renames_it(homelab, enabled, rename, advertised):
    homelab["gpuStack"]["timeSlicing"] = {"enabled": enabled, "renameByDefault": rename}
    cfg = parse_stack_config(homelab)
    assert cluster.advertised_resource(cfg) == advertised
    sharing = cluster.device_plugin_config(cfg).get("sharing")
    assert (sharing["timeSlicing"]["renameByDefault"] if sharing else False) == (advertised != "nvidia.com/gpu")


def test_service_monitor_only_with_prometheus_operator(homelab):
    assert cluster.operator_values(parse_stack_config(homelab))["dcgmExporter"]["serviceMonitor"]["enabled"] is False
    homelab["gpuStack"]["prometheusOperator"] = True
    assert cluster.operator_values(parse_stack_config(homelab))["dcgmExporter"]["serviceMonitor"]["enabled"] is True


def test_operator_chart_is_ngcs_with_the_talos_values(homelab):
    """Driver and toolkit come from the Talos extensions, the driver lives
    under /usr/local on Talos, the device plugin reads this node's key of the
    shared ConfigMap (facts 11-14); the optional parts follow the config."""
    homelab["gpuStack"].update(configMapName="gpu-sharing", configKey="t4", prometheusOperator=True, nfd=False)
    homelab["gpus"][0]["mig"] = True
    chart = cluster.helm_chart(parse_stack_config(homelab))
    assert chart == cluster.HelmChart("gpu-operator", "gpu-operator", "https://helm.ngc.nvidia.com/nvidia", "v26.7.0", {
        "driver": {"enabled": False},
        "toolkit": {"enabled": False},
        "hostPaths": {"driverInstallDir": "/usr/local"},
        "devicePlugin": {"enabled": True, "config": {"name": "gpu-sharing", "default": "t4"}},
        "gfd": {"enabled": True},
        "dcgmExporter": {"enabled": True, "serviceMonitor": {"enabled": True, "additionalLabels": {"release": "kube-prometheus-stack"}}},
        "migManager": {"enabled": True},
        "nfd": {"enabled": False},
    })


def test_device_plugin_chart_reads_the_stacks_config_map_key_through_runtime_class_nvidia(homelab):
    homelab["talos"]["version"] = "v1.11.6"
    homelab["gpuStack"].update(mode="devicePlugin", configMapName="gpu-sharing", configKey="t4", nfd=False)
    chart = cluster.helm_chart(parse_stack_config(homelab))
    assert chart == cluster.HelmChart("nvidia-device-plugin", "nvidia-device-plugin", "https://nvidia.github.io/k8s-device-plugin", "0.18.2", {
        "runtimeClassName": "nvidia",
        "config": {"name": "gpu-sharing", "default": "t4"},
        "gfd": {"enabled": True},
        "nfd": {"enabled": False},
    })


PRIVILEGED = {"pod-security.kubernetes.io/enforce": "privileged", "pod-security.kubernetes.io/audit": "privileged",
              "pod-security.kubernetes.io/warn": "privileged"}


def test_the_namespace_is_the_stacks_and_privileged(homelab):
    """The operator's daemonsets mount host paths: Pod Security must admit them."""
    homelab["gpuStack"]["namespace"] = "gpus"
    assert cluster.namespace_manifest(parse_stack_config(homelab)) == {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gpus", "labels": PRIVILEGED}}


def test_the_time_slicing_config_map_holds_only_this_nodes_key(homelab):
    homelab["gpuStack"]["timeSlicing"]["replicas"] = 6
    cfg = parse_stack_config(homelab)
    data = {"moody-good": cluster.device_plugin_config_yaml(cfg)}
    assert "replicas: 6" in data["moody-good"]
    assert cluster.time_slicing_config_map(cfg) == {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "time-slicing-config", "namespace": "gpu-operator"}, "data": data}
    annotated = cluster.time_slicing_config_map(cfg, {"example.org/owner": "moody-good"})
    assert annotated["metadata"] == {"name": "time-slicing-config", "namespace": "gpu-operator",
                                     "annotations": {"example.org/owner": "moody-good"}}
    assert cluster.time_slicing_config_map(cfg, {})["metadata"] == {"name": "time-slicing-config", "namespace": "gpu-operator"}


def test_the_runtime_class_is_nvidia_with_the_nvidia_handler():
    """The handler names the containerd runtime the Talos NVIDIA toolkit registers."""
    assert cluster.runtime_class_manifest() == {
        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "nvidia"}, "handler": "nvidia"}
