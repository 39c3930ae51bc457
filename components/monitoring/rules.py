"""The GPU alert rules, as a prometheus-operator PrometheusRule
(``monitoring.coreos.com/v1``; its CRD from prometheus-operator v0.93.0 is
vendored in tests/data/upstream/prometheus-operator/ and every object is
validated against it). The same groups, written as a plain rule file, pass
``promtool check rules`` and the unit tests of ``promtool test rules``
(tests/monitoring/).

Each alert's description names what to check: the doctor command of the
layer where the cause lives (docs/doctor.md, docs/monitoring.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components import cluster
from components.config import StackConfig
from components.monitoring import metrics as m

PROMETHEUS_RULE_API = "monitoring.coreos.com/v1"
RULE_NAME = "gpu-node-alerts"
GROUP_NAME = "gpu-node"

FRAMEBUFFER_FULL_RATIO = 0.9
ENCODER_SATURATED_PERCENT = 90
ENCODER_SATURATED_FOR = "15m"


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str

    def rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.for_ != "0m":
            rule["for"] = self.for_
        rule["labels"] = {"severity": self.severity}
        rule["annotations"] = {"summary": self.summary, "description": self.description}
        return rule


def doctor_command(stack: str, *layers: str) -> str:
    return "python -m components.doctor --stack " + stack + "".join(f" --layer {layer}" for layer in layers)


def _selector(**labels: str) -> str:
    return "{" + ",".join(f'{key}="{value}"' for key, value in labels.items()) + "}"


def alerts(cfg: StackConfig, stack: str) -> list[Alert]:
    """The alerts, in the order docs/monitoring.md explains them."""
    monitoring = cfg.gpu_stack.monitoring
    job = m.exporter(cfg).job
    on_gpu = "GPU {{ $labels.gpu }} ({{ $labels.modelName }}) on {{ $labels.Hostname }}"
    node = cfg.node_name
    shares = _selector(node=node, resource=m.shares_resource_label(cfg), unit="integer")
    wanted = cfg.advertised_gpus
    return [
        Alert(
            "GpuXidError", f"max_over_time({m.XID_ERRORS}[5m]) > 0", "0m", "critical",
            f"{on_gpu} reported XID {{{{ $value }}}}",
            "The NVIDIA driver reported an XID error (NVIDIA's XID catalogue says what the number means); pods on this GPU "
            "may have lost their work. Check the driver and the GPU from the node and a pod: "
            f"{doctor_command(stack, 'talos', 'workload')}; a GPU that keeps reporting XIDs needs the node rebooted.",
        ),
        Alert(
            "GpuTemperatureHigh", f"{m.GPU_TEMP} >= {monitoring.gpu_temperature_celsius}", "5m", "warning",
            f"{on_gpu} is at {{{{ $value }}}} °C",
            f"The GPU has been at {monitoring.gpu_temperature_celsius} °C or more for 5 minutes "
            "(gpuStack.monitoring.gpuTemperatureCelsius); a passively cooled card (a Tesla T4) needs the chassis' air flow. "
            f"Check the host and the card: {doctor_command(stack, 'host', 'workload')} (nvidia-smi in the pod shows the "
            "temperature and the clocks it throttled to).",
        ),
        Alert(
            "GpuFramebufferNearlyFull",
            f"{m.FB_USED} / ({m.FB_USED} + {m.FB_FREE}) > {FRAMEBUFFER_FULL_RATIO}", "5m", "warning",
            f"{on_gpu} has {{{{ $value | humanizePercentage }}}} of its framebuffer in use",
            "Time-sliced shares have no memory isolation: every pod on this GPU uses the same framebuffer, and the next "
            "allocation fails (CUDA out of memory, a transcode that stops). See which processes hold it with nvidia-smi: "
            f"{doctor_command(stack, 'workload')}; give the big users fewer shares or another GPU.",
        ),
        Alert(
            "DcgmExporterDown", f"up{_selector(job=job)} == 0", "5m", "critical",
            "The DCGM exporter {{ $labels.pod }} cannot be scraped",
            "Prometheus reaches the exporter's target but the scrape fails, so the GPU dashboard and every GPU alert are "
            f"blind. Check the exporter's pod and one scrape of it: {doctor_command(stack, 'kubernetes', 'monitoring')}.",
        ),
        Alert(
            "DcgmExporterNotScraped", f"absent(up{_selector(job=job)})", "15m", "warning",
            f"Prometheus scrapes no DCGM exporter (job {job})",
            "No target of the exporter's job exists: the exporter is not running, or its ServiceMonitor is not picked up "
            "(its labels must match the Prometheus's serviceMonitorSelector: gpuStack.monitoring.prometheusLabels). "
            f"Check: {doctor_command(stack, 'monitoring')}.",
        ),
        Alert(
            "GpuSharesNotAdvertised",
            f"sum by (node) ({m.NODE_ALLOCATABLE}{shares}) < {wanted}"
            f" or (absent({m.NODE_ALLOCATABLE}{shares}) and on () (count({m.NODE_INFO}{_selector(node=node)}) > 0))",
            "10m", "warning",
            f"Node {node} advertises fewer than {wanted} {cluster.advertised_resource(cfg)}",
            f"The node should advertise {wanted} shares (gpuStack.timeSlicing.replicas x GPUs) but the device plugin "
            "advertises fewer or none, so GPU pods stay Pending. Check the node's config label, the device plugin and the "
            f"time-slicing ConfigMap: {doctor_command(stack, 'kubernetes')}.",
        ),
        Alert(
            "GpuEncoderSaturated", f"{m.ENC_UTIL} >= {ENCODER_SATURATED_PERCENT}", ENCODER_SATURATED_FOR, "warning",
            f"{on_gpu} has had its encoder at {{{{ $value }}}} % for {ENCODER_SATURATED_FOR}",
            "NVENC is the bottleneck: new transcodes queue or fall back to the CPU. See who encodes (Jellyfin's "
            f"active sessions; nvidia-smi in the pod): {doctor_command(stack, 'workload')}; lower the transcoding "
            "resolution or move a consumer to another GPU.",
        ),
    ]


def rule_groups(cfg: StackConfig, stack: str) -> dict[str, Any]:
    """The rule file body (``groups:``), as Prometheus and promtool read it."""
    return {"groups": [{"name": GROUP_NAME, "rules": [alert.rule() for alert in alerts(cfg, stack)]}]}


def prometheus_rule(cfg: StackConfig, stack: str) -> dict[str, Any]:
    """The PrometheusRule in the GPU stack's namespace, labelled so the
    Prometheus's ruleSelector picks it (gpuStack.monitoring.prometheusLabels)."""
    return {
        "apiVersion": PROMETHEUS_RULE_API,
        "kind": "PrometheusRule",
        "metadata": {"name": RULE_NAME, "namespace": cfg.gpu_stack.namespace,
                     "labels": dict(cfg.gpu_stack.monitoring.prometheus_labels)},
        "spec": rule_groups(cfg, stack),
    }
