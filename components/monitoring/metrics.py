"""What the dashboard and the alert rules read, and where it comes from.

The DCGM exporter's metrics (one series per GPU, labelled ``gpu``, ``UUID``,
``pci_bus_id``, ``device``, ``modelName`` and ``Hostname``: the node name from
the pod's ``NODE_NAME``; NVIDIA/dcgm-exporter 4.4.2-4.7.0
internal/pkg/rendermetrics/render_metrics.go, internal/pkg/hostname/hostname.go):

- operator mode: the GPU Operator runs the exporter with
  ``DCGM_EXPORTER_COLLECTORS=/etc/dcgm-exporter/dcp-metrics-included.csv``
  (NVIDIA/gpu-operator v26.7.0 assets/state-dcgm-exporter/0800_daemonset.yaml,
  internal/state/dcgm_exporter.go). Every DCGM metric below is in that
  default list (tests/data/upstream/dcgm/), so the program keeps the default
  and ships no counters ConfigMap (``dcgmExporter.config.name`` stays unset).
  Its ServiceMonitor sets ``jobLabel: app``, so the job is the Service's
  ``app`` label (assets/state-dcgm-exporter/0400_service.yaml,
  0500_service_monitor.yaml).
- device-plugin mode: the nvidia-device-plugin chart has no exporter. The
  user installs NVIDIA's dcgm-exporter chart (``dcgm_exporter_chart``);
  ``render`` writes its values. Its metrics list
  (deployment/templates/metrics-configmap.yaml, mounted as
  default-counters.csv) has every DCGM metric below too; its ServiceMonitor
  has no jobLabel, so the job is the Service's name, the release name when
  that contains the chart's name (deployment/templates/_helpers.tpl).

kube-state-metrics (v2.20.0 internal/store/pod.go, node.go, utils.go): an
extended resource is labelled ``resource`` with every character outside
``[a-zA-Z0-9_]`` replaced by ``_`` and ``unit="integer"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from components import cluster
from components.config import StackConfig

ENC_UTIL = "DCGM_FI_DEV_ENC_UTIL"
DEC_UTIL = "DCGM_FI_DEV_DEC_UTIL"
GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
MEM_COPY_UTIL = "DCGM_FI_DEV_MEM_COPY_UTIL"
FB_USED = "DCGM_FI_DEV_FB_USED"
FB_FREE = "DCGM_FI_DEV_FB_FREE"
GPU_TEMP = "DCGM_FI_DEV_GPU_TEMP"
POWER_USAGE = "DCGM_FI_DEV_POWER_USAGE"
XID_ERRORS = "DCGM_FI_DEV_XID_ERRORS"

# Every DCGM metric a panel or a rule reads; the doctor checks the exporter
# serves each of them for the node.
DCGM_METRICS: tuple[str, ...] = (ENC_UTIL, DEC_UTIL, GPU_UTIL, MEM_COPY_UTIL, FB_USED, FB_FREE, GPU_TEMP, POWER_USAGE, XID_ERRORS)

POD_REQUESTS = "kube_pod_container_resource_requests"
NODE_ALLOCATABLE = "kube_node_status_allocatable"
NODE_INFO = "kube_node_info"
POD_PHASE = "kube_pod_status_phase"
KUBE_STATE_METRICS: tuple[str, ...] = (POD_REQUESTS, NODE_ALLOCATABLE, NODE_INFO, POD_PHASE)

# The exporter's node label (the pod's NODE_NAME).
NODE_LABEL = "Hostname"
EXPORTER_PORT = 9400


@dataclass(frozen=True)
class ExporterChart:
    """NVIDIA's dcgm-exporter chart, for device-plugin mode (deployment/Chart.yaml
    at the exporter tag 4.4.2-4.7.0: chart 4.7.0, the exporter the GPU
    Operator v25.10.1 runs)."""

    release_name: str = "dcgm-exporter"
    chart: str = "dcgm-exporter"
    repo: str = "https://nvidia.github.io/dcgm-exporter/helm-charts"
    version: str = "4.7.0"


DCGM_EXPORTER_CHART = ExporterChart()


@dataclass(frozen=True)
class Exporter:
    """Where the exporter runs in a mode: its namespace, the label its pods
    carry, and the ``job`` label Prometheus gives its targets."""

    namespace: str
    pod_selector: str
    job: str


def exporter(cfg: StackConfig) -> Exporter:
    if cfg.gpu_stack.mode == "operator":
        return Exporter(cfg.gpu_stack.namespace, "app=nvidia-dcgm-exporter", "nvidia-dcgm-exporter")
    chart = DCGM_EXPORTER_CHART
    return Exporter(cfg.gpu_stack.namespace, f"app.kubernetes.io/name={chart.chart}", chart.release_name)


def dcgm_exporter_values(cfg: StackConfig) -> dict:
    """Values of the dcgm-exporter chart in device-plugin mode: RuntimeClass
    ``nvidia`` (as the device plugin: Talos before 1.13 has no CDI), only on
    the GPU nodes (GFD's ``nvidia.com/gpu.present`` label), the ServiceMonitor
    with the labels the Prometheus selects."""
    monitoring = cfg.gpu_stack.monitoring
    return {
        "runtimeClassName": cluster.RUNTIME_CLASS,
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "serviceMonitor": {"enabled": cfg.gpu_stack.prometheus_operator,
                           "additionalLabels": dict(monitoring.prometheus_labels)},
    }


def resource_label(resource: str) -> str:
    """kube-state-metrics' ``resource`` label of an extended resource:
    ``nvidia.com/gpu.shared`` -> ``nvidia_com_gpu_shared``."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", resource)


def shares_resource_label(cfg: StackConfig) -> str:
    return resource_label(cluster.advertised_resource(cfg))


def counters_in_csv(text: str) -> set[str]:
    """The metrics a DCGM exporter counters file enables: the first field of
    each line that is not empty and not a ``#`` comment, as the exporter reads it
    (Go's encoding/csv with ``Comment = '#'``, internal/pkg/counters/counter_config.go)."""
    names = set()
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            names.add(stripped.split(",", 1)[0].strip())
    return names
