"""The GPU transcoding dashboard, built with Grafana's foundation SDK
(grafana-foundation-sdk for Python, not hand-written JSON), and the
ConfigMap that hands it to Grafana's dashboard sidecar: kube-prometheus-stack
(prometheus-community/helm-charts kube-prometheus-stack-88.5.3 values.yaml,
``grafana.sidecar.dashboards``) loads every ConfigMap labelled
``grafana_dashboard: "1"`` in every namespace (``searchNamespace: ALL``).

Panels per GPU node (the ``node`` variable: the exporter's ``Hostname``
label): encoder and decoder use, GPU and memory-copy use, framebuffer used
against total (used + free: the exporter's default counters have no total),
temperature against the alert's threshold, power, XID errors, and the
time-slice shares pods request against the shares the node advertises
(kube-state-metrics, when it runs).
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import common as gcb
from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as gc
from grafana_foundation_sdk.models import dashboard as gm

from components.config import StackConfig
from components.monitoring import metrics as m

UID = "gpu-transcoding"
TITLE = "GPU transcoding"
CONFIG_MAP_NAME = "gpu-transcoding-dashboard"
FILE_NAME = "gpu-transcoding.json"
DATASOURCE = gm.DataSourceRef(type_val="prometheus", uid="${datasource}")
NODE = '{Hostname=~"$node"}'


def _query(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref)


def _panel(title: str, description: str, unit: str, targets: list[prometheus.Dataquery], *, width: int = 12,
           max_value: float | None = None) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).description(description).datasource(DATASOURCE)
             .unit(unit).min(0).span(width).height(8))
    if max_value is not None:
        panel = panel.max(max_value)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def _threshold(value: float) -> gd.ThresholdsConfig:
    return gd.ThresholdsConfig().mode(gm.ThresholdsMode.ABSOLUTE).steps([
        gm.Threshold(value=None, color="green"), gm.Threshold(value=value, color="red")])


def build(cfg: StackConfig) -> gd.Dashboard:
    """The dashboard builder; :func:`dashboard_json` is what Grafana gets."""
    per_gpu = "{{Hostname}} GPU {{gpu}}"
    shares = m.shares_resource_label(cfg)
    temperature = cfg.gpu_stack.monitoring.gpu_temperature_celsius
    requests = (f'{m.POD_REQUESTS}{{resource="{shares}",unit="integer",node=~"$node"}}'
                f' * on (namespace, pod) group_left () ({m.POD_PHASE}{{phase="Running"}} == 1)')
    board = (
        gd.Dashboard(TITLE).uid(UID).tags(["gpu", "nvidia", "dcgm", "transcoding"]).refresh("30s").time("now-6h", "now")
        .description("NVENC/NVDEC, GPU, framebuffer, temperature, power, XID errors and time-slice shares per GPU node "
                     "(DCGM exporter, kube-state-metrics). Made by proxmox-talos-gpu; see docs/monitoring.md.")
        .with_variable(gd.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(gd.QueryVariable("node").label("GPU node").datasource(DATASOURCE)
                       .query(f"label_values({m.GPU_TEMP}, {m.NODE_LABEL})")
                       .refresh(gm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(gm.VariableSort.ALPHABETICAL_ASC)
                       .multi(True).include_all(True))
        .with_row(gd.Row("Transcoding"))
        .with_panel(_panel("Encoder (NVENC) use", "DCGM_FI_DEV_ENC_UTIL per GPU; sustained 90 % or more raises "
                           "GpuEncoderSaturated.", "percent", [_query(m.ENC_UTIL + NODE, per_gpu)], max_value=100)
                    .thresholds(_threshold(90)))
        .with_panel(_panel("Decoder (NVDEC) use", "DCGM_FI_DEV_DEC_UTIL per GPU.", "percent",
                           [_query(m.DEC_UTIL + NODE, per_gpu)], max_value=100))
        .with_row(gd.Row("GPU"))
        .with_panel(_panel("GPU use", "DCGM_FI_DEV_GPU_UTIL: time a kernel ran.", "percent",
                           [_query(m.GPU_UTIL + NODE, per_gpu)], max_value=100))
        .with_panel(_panel("Memory copy use", "DCGM_FI_DEV_MEM_COPY_UTIL: time the memory was read or written.", "percent",
                           [_query(m.MEM_COPY_UTIL + NODE, per_gpu)], max_value=100))
        .with_row(gd.Row("Memory shared by every time-slice share"))
        .with_panel(_panel("Framebuffer used / total", "Used against used + free (MiB): time-slicing has no memory "
                           "isolation, every share uses this one framebuffer.", "mbytes",
                           [_query(m.FB_USED + NODE, per_gpu + " used"),
                            _query(f"{m.FB_USED}{NODE} + {m.FB_FREE}{NODE}", per_gpu + " total", "B")], width=24))
        .with_row(gd.Row("Health"))
        .with_panel(_panel("Temperature", f"DCGM_FI_DEV_GPU_TEMP; the red line is GpuTemperatureHigh's {temperature} °C.",
                           "celsius", [_query(m.GPU_TEMP + NODE, per_gpu)], width=8)
                    .thresholds(_threshold(temperature)).thresholds_style(gcb.GraphThresholdsStyleConfig().mode(gc.GraphTresholdsStyleMode.LINE)))
        .with_panel(_panel("Power", "DCGM_FI_DEV_POWER_USAGE.", "watt", [_query(m.POWER_USAGE + NODE, per_gpu)], width=8))
        .with_panel(_panel("XID errors", "DCGM_FI_DEV_XID_ERRORS: the last XID the driver reported (0: none); any other "
                           "value raises GpuXidError.", "none",
                           [_query(f"max_over_time({m.XID_ERRORS}{NODE}[$__rate_interval])", per_gpu)], width=8)
                    .draw_style(gc.GraphDrawStyle.POINTS))
        .with_row(gd.Row("Time-slice shares (kube-state-metrics)"))
        .with_panel(_panel("Shares requested / advertised", f"{shares} requested by running pods against the node's "
                           "allocatable; fewer advertised than replicas x GPUs raises GpuSharesNotAdvertised.", "none",
                           [_query(f"sum by (node) ({requests})", "{{node}} requested"),
                            _query(f'sum by (node) ({m.NODE_ALLOCATABLE}{{resource="{shares}",unit="integer",node=~"$node"}})',
                                   "{{node}} advertised", "B")]))
        .with_panel(_panel("Shares by pod", f"{shares} requested by each running pod.", "none",
                           [_query(f"sum by (namespace, pod) ({requests})", "{{namespace}}/{{pod}}")])
                    .stacking(gcb.StackingConfig().mode(gc.StackingMode.NORMAL)))
    )
    return board


def dashboard_model(cfg: StackConfig) -> dict[str, Any]:
    """The dashboard as the JSON object Grafana imports, panel ids numbered."""
    model = json.loads(JSONEncoder(sort_keys=True).encode(build(cfg).build()))
    for index, panel in enumerate(model["panels"], 1):
        panel["id"] = index
    return model


def dashboard_json(cfg: StackConfig) -> str:
    return json.dumps(dashboard_model(cfg), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def dashboard_config_map(cfg: StackConfig) -> dict[str, Any]:
    """The ConfigMap the sidecar loads (gpuStack.monitoring.dashboard*)."""
    monitoring = cfg.gpu_stack.monitoring
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP_NAME, "namespace": monitoring.dashboard_namespace or cfg.gpu_stack.namespace,
                     "labels": {monitoring.dashboard_label: monitoring.dashboard_label_value}},
        "data": {FILE_NAME: dashboard_json(cfg)},
    }
