"""The dashboard ConfigMap and the PrometheusRule as pulumi-kubernetes
resources (children of GpuStack on the owner stack, only with
``gpuStack.prometheusOperator: true``): the same objects `render` writes."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.config import StackConfig
from components.monitoring.artifacts import wanted
from components.monitoring.dashboard import dashboard_config_map
from components.monitoring.rules import prometheus_rule
from components.options import child_options


def monitoring_resources(parent: pulumi.Resource, name: str, cfg: StackConfig, stack: str,
                         namespace: pulumi.Input[str], opts: pulumi.ResourceOptions | None,
                         depends_on: list[pulumi.Resource]) -> list[pulumi.Resource]:
    """The objects :func:`wanted` asks for. The rule goes in the GPU stack's
    namespace (``namespace``: the Namespace resource's output, so it is created
    after it); the dashboard where gpuStack.monitoring.dashboardNamespace says."""
    dashboard, rules = wanted(cfg)
    made: list[pulumi.Resource] = []
    if dashboard:
        document = dashboard_config_map(cfg)
        metadata = document["metadata"]
        made.append(k8s.core.v1.ConfigMap(
            f"{name}-gpu-dashboard",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=metadata["name"],
                namespace=namespace if metadata["namespace"] == cfg.gpu_stack.namespace else metadata["namespace"],
                labels=metadata["labels"]),
            data=document["data"],
            opts=child_options(parent, opts, depends_on=depends_on),
        ))
    if rules:
        document = prometheus_rule(cfg, stack)
        made.append(k8s.apiextensions.CustomResource(
            f"{name}-gpu-alerts",
            api_version=document["apiVersion"],
            kind=document["kind"],
            metadata={**document["metadata"], "namespace": namespace},
            spec=document["spec"],
            opts=child_options(parent, opts, depends_on=depends_on),
        ))
    return made
