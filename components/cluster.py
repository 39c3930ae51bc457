"""Pure planning for the cluster side (GpuStack): what goes into Kubernetes.

No Pulumi resources here, so `render` and the tests see exactly what the
component registers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from components.config import StackConfig

GPU_RESOURCE = "nvidia.com/gpu"
# renameByDefault: the plugin advertises time-sliced replicas under the
# resource name plus this suffix, and no longer under the plain name
# (NVIDIA/k8s-device-plugin v0.18.2 api/config/v1/consts.go
# DefaultSharedResourceNameSuffix, replicas.go, internal/rm/device_map.go).
SHARED_SUFFIX = ".shared"
DEVICE_PLUGIN_CONFIG_LABEL = "nvidia.com/device-plugin.config"
RUNTIME_CLASS = "nvidia"

OPERATOR_CHART = "gpu-operator"
OPERATOR_REPO = "https://helm.ngc.nvidia.com/nvidia"  # README table row 12: not oci://ghcr.io
DEVICE_PLUGIN_CHART = "nvidia-device-plugin"
DEVICE_PLUGIN_REPO = "https://nvidia.github.io/k8s-device-plugin"

# Pod Security Admission: the operator's daemonsets mount host paths and /dev.
PRIVILEGED_NAMESPACE_LABELS = {
    "pod-security.kubernetes.io/enforce": "privileged",
    "pod-security.kubernetes.io/audit": "privileged",
    "pod-security.kubernetes.io/warn": "privileged",
}


def field_manager(cfg: StackConfig) -> str:
    """Server-side-apply field manager: one per node stack, so stacks never
    take each other's fields."""
    return f"proxmox-talos-gpu-{cfg.node_name}"


def advertised_resource(cfg: StackConfig) -> str:
    """The extended resource the node advertises its GPUs as:
    ``nvidia.com/gpu``, or ``nvidia.com/gpu.shared`` with time-slicing and
    ``renameByDefault`` (then ``nvidia.com/gpu`` is not advertised at all).
    Its count is ``cfg.advertised_gpus`` (replicas x GPUs)."""
    sharing = cfg.gpu_stack.time_slicing
    if sharing.enabled and sharing.rename_by_default:
        return GPU_RESOURCE + SHARED_SUFFIX
    return GPU_RESOURCE


def device_plugin_config(cfg: StackConfig) -> dict[str, Any]:
    """This node's device-plugin config, in the schema the plugin accepts
    (README table row 10: `resources: [{name, replicas}]`, not `replicas:` alone)."""
    migs = any(gpu.mig for gpu in cfg.gpus)
    config: dict[str, Any] = {"version": "v1", "flags": {"migStrategy": "single" if migs else "none"}}
    sharing = cfg.gpu_stack.time_slicing
    if sharing.enabled:
        config["sharing"] = {
            "timeSlicing": {
                "renameByDefault": sharing.rename_by_default,
                "failRequestsGreaterThanOne": sharing.fail_requests_greater_than_one,
                "resources": [{"name": GPU_RESOURCE, "replicas": sharing.replicas}],
            }
        }
    return config


def device_plugin_config_yaml(cfg: StackConfig) -> str:
    return yaml.safe_dump(device_plugin_config(cfg), sort_keys=False)


def operator_values(cfg: StackConfig) -> dict[str, Any]:
    """GPU Operator values for Talos (README table rows 11, 13, 14): driver and toolkit come
    from Talos extensions; no `validator.enabled` / `operator.defaultRuntime`
    (not chart keys); ServiceMonitor only with the Prometheus Operator."""
    stack = cfg.gpu_stack
    return {
        "driver": {"enabled": False},
        "toolkit": {"enabled": False},
        "hostPaths": {"driverInstallDir": "/usr/local"},
        "devicePlugin": {
            "enabled": True,
            "config": {"name": stack.config_map_name, "default": cfg.config_key},
        },
        "gfd": {"enabled": True},
        "dcgmExporter": {
            "enabled": True,
            # Its default counters have every metric the dashboard and rules read
            # (components.monitoring.metrics), so no dcgmExporter.config.
            "serviceMonitor": ({"enabled": True, "additionalLabels": dict(stack.monitoring.prometheus_labels)}
                               if stack.prometheus_operator else {"enabled": False}),
        },
        "migManager": {"enabled": any(gpu.mig for gpu in cfg.gpus)},
        "nfd": {"enabled": stack.nfd},
    }


def device_plugin_values(cfg: StackConfig) -> dict[str, Any]:
    """nvidia-device-plugin chart values (Talos < 1.13, README table row 13): RuntimeClass
    `nvidia` so the plugin sees the driver, the same time-slicing ConfigMap, GFD on."""
    stack = cfg.gpu_stack
    return {
        "runtimeClassName": RUNTIME_CLASS,
        "config": {"name": stack.config_map_name, "default": cfg.config_key},
        "gfd": {"enabled": True},
        "nfd": {"enabled": stack.nfd},
    }


@dataclass(frozen=True)
class HelmChart:
    release_name: str
    chart: str
    repo: str
    version: str
    values: dict[str, Any]


def helm_chart(cfg: StackConfig) -> HelmChart:
    stack = cfg.gpu_stack
    if stack.mode == "operator":
        return HelmChart("gpu-operator", OPERATOR_CHART, OPERATOR_REPO, stack.operator_chart_version, operator_values(cfg))
    return HelmChart("nvidia-device-plugin", DEVICE_PLUGIN_CHART, DEVICE_PLUGIN_REPO, stack.device_plugin_chart_version, device_plugin_values(cfg))


def namespace_manifest(cfg: StackConfig) -> dict[str, Any]:
    """The GPU stack's namespace, privileged for the operator's daemonsets."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": cfg.gpu_stack.namespace, "labels": dict(PRIVILEGED_NAMESPACE_LABELS)}}


def time_slicing_config_map(cfg: StackConfig, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The shared time-slicing ConfigMap holding only this node's key: the
    whole object for the owner stack, the entry to merge in for the others."""
    metadata: dict[str, Any] = {"name": cfg.gpu_stack.config_map_name, "namespace": cfg.gpu_stack.namespace}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
            "data": {cfg.config_key: device_plugin_config_yaml(cfg)}}


def runtime_class_manifest() -> dict[str, Any]:
    """RuntimeClass `nvidia` (device-plugin mode only: the operator owns its own, README row 15)."""
    return {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": RUNTIME_CLASS}, "handler": RUNTIME_CLASS}


def node_labels(cfg: StackConfig) -> dict[str, str]:
    """Labels this stack puts on its node: which device-plugin config applies."""
    return {DEVICE_PLUGIN_CONFIG_LABEL: cfg.config_key}


def value_key_paths(values: Any, prefix: str = "") -> list[str]:
    """Every leaf key path of a values tree (`a.b.c`), for checking against a
    chart's values.yaml."""
    if isinstance(values, dict) and values:
        paths: list[str] = []
        for key, value in values.items():
            paths += value_key_paths(value, f"{prefix}.{key}" if prefix else str(key))
        return paths
    return [prefix] if prefix else []
