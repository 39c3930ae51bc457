"""The ``gpuStack`` section: how the GPU reaches Kubernetes (GPU Operator or
device plugin, by Helm or Flux), time-slicing, and the monitoring the owner
stack delivers; with the keys only the owner stack sets and the keys every
node stack sets alike."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from components.config.values import (
    ConfigMapKey,
    DnsLabel,
    LabelKey,
    LabelValue,
    PlainChartVersion,
    RepositoryPath,
    Section,
    VChartVersion,
)


class TimeSlicingConfig(Section):
    enabled: bool = True
    replicas: int = 4
    rename_by_default: bool = False
    fail_requests_greater_than_one: bool = False


class FluxConfig(Section):
    """Flux delivery (``gpuStack.delivery: flux``) and the tree that
    ``python -m components.render --flux DIR`` writes for a GitOps repository."""

    # Who puts the Flux objects (namespace, HelmRepository, HelmRelease,
    # time-slicing ConfigMap) into the cluster: this program, or Flux itself
    # from your Git repository (the committed `render --flux` tree).
    objects: Literal["pulumi", "git"] = "pulumi"
    # The GitRepository (and its namespace) that ks.yaml's Kustomization reads.
    git_repository: DnsLabel = "flux-system"
    namespace: DnsLabel = "flux-system"
    # The app/ folder's path in that repository; ks.yaml needs it.
    path: RepositoryPath | None = None
    # A device plugin that Flux applies from Git, in the way of the step to
    # Talos 1.13: refuse (name it and say how to remove it from Git), or
    # suspend the Kustomization that applies it and remove it
    # (components.gpu_migration).
    git_device_plugin: Literal["refuse", "suspend"] = "refuse"


# Keys only the owner stack acts on (the Helm release's values): a non-owner
# stack setting one would have it silently ignored, so it is refused.
OWNER_ONLY_KEYS: tuple[str, ...] = ("prometheusOperator", "nfd", "monitoring")
# Keys every node stack must set alike (python -m components.stacks check).
SHARED_KEYS: tuple[str, ...] = ("mode", "delivery", "namespace", "configMapName", "operatorChartVersion", "devicePluginChartVersion")


class MonitoringConfig(Section):
    """The GPU dashboard and alert rules (components.monitoring, docs/monitoring.md);
    delivered only with ``gpuStack.prometheusOperator: true``."""

    dashboard: bool = True
    # Where Grafana's dashboard sidecar looks (kube-prometheus-stack: label
    # grafana_dashboard="1", every namespace); None: the GPU stack's namespace.
    dashboard_namespace: DnsLabel | None = None
    dashboard_label: LabelKey = "grafana_dashboard"
    dashboard_label_value: LabelValue = "1"
    # Labels a Prometheus's ruleSelector / serviceMonitorSelector picks (the
    # kube-prometheus-stack chart selects release=<its release name>).
    prometheus_labels: dict[LabelKey, LabelValue] = {"release": "kube-prometheus-stack"}
    gpu_temperature_celsius: Annotated[int, Field(ge=40, le=110)] = 85


class GpuStackConfig(Section):
    mode: Literal["operator", "devicePlugin"] = "operator"
    # helm: a Helm release installed by this program; flux: Flux objects
    # (HelmRepository + HelmRelease) that Flux's helm-controller installs.
    delivery: Literal["helm", "flux"] = "helm"
    flux: FluxConfig = FluxConfig()
    owns_cluster_objects: bool = True
    namespace: DnsLabel = "gpu-operator"
    operator_chart_version: VChartVersion = "v26.7.0"
    device_plugin_chart_version: PlainChartVersion = "0.18.2"
    config_map_name: DnsLabel = "time-slicing-config"
    config_key: ConfigMapKey | None = None
    time_slicing: TimeSlicingConfig = TimeSlicingConfig()
    prometheus_operator: bool = False
    monitoring: MonitoringConfig = MonitoringConfig()
    nfd: bool = True
    # Also remove, before the node's upgrade to Talos 1.13, a RuntimeClass
    # `nvidia` or nvidia-device-plugin release this program did not create
    # (the guide's hand-made ones).
    adopt_guide_objects: bool = False
