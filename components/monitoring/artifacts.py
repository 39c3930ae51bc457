"""What `render` writes for monitoring (kubernetes/monitoring/) and the
objects `render --flux` adds to app/: the same planners GpuStack uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from components.config import StackConfig
from components.monitoring import metrics
from components.monitoring.dashboard import dashboard_config_map, dashboard_json
from components.monitoring.rules import prometheus_rule, rule_groups

FOLDER = "kubernetes/monitoring"


def wanted(cfg: StackConfig) -> tuple[bool, bool]:
    """(dashboard, rules): what the owner stack delivers."""
    stack = cfg.gpu_stack
    on = stack.prometheus_operator and stack.owns_cluster_objects
    return on and stack.monitoring.dashboard, on


def flux_resources(cfg: StackConfig, stack: str) -> dict[str, dict[str, Any]]:
    """app/'s monitoring objects by file name (owner stack, prometheusOperator: true)."""
    dashboard, rules = wanted(cfg)
    out: dict[str, dict[str, Any]] = {}
    if dashboard:
        out["gpu-dashboard.yaml"] = dashboard_config_map(cfg)
    if rules:
        out["gpu-alerts.yaml"] = prometheus_rule(cfg, stack)
    return out


def render_artifacts(cfg: StackConfig, stack: str, dump: Callable[[Any], str]) -> dict[str, str]:
    """The owner stack's monitoring files: the dashboard JSON (to import by
    hand too), and with prometheusOperator its ConfigMap, the PrometheusRule
    and the same rules as a plain rule file (``promtool check rules``); in
    device-plugin mode the dcgm-exporter release the user installs."""
    if not cfg.gpu_stack.owns_cluster_objects:
        return {}
    out = {f"{FOLDER}/gpu-dashboard.json": dashboard_json(cfg)}
    dashboard, rules = wanted(cfg)
    if dashboard:
        out[f"{FOLDER}/gpu-dashboard-configmap.yaml"] = dump(dashboard_config_map(cfg))
    if rules:
        out[f"{FOLDER}/gpu-alerts-prometheusrule.yaml"] = dump(prometheus_rule(cfg, stack))
        out[f"{FOLDER}/gpu-alerts.rules.yaml"] = ("# The PrometheusRule's groups as a Prometheus rule file: "
                                                  "promtool check rules gpu-alerts.rules.yaml\n" + dump(rule_groups(cfg, stack)))
    if cfg.gpu_stack.mode == "devicePlugin":
        chart = metrics.DCGM_EXPORTER_CHART
        out[f"{FOLDER}/dcgm-exporter-values.yaml"] = (
            "# The nvidia-device-plugin chart has no DCGM exporter: install NVIDIA's chart with these values\n"
            f"# (docs/monitoring.md):\n#   helm upgrade --install {chart.release_name} {chart.chart} --repo {chart.repo} \\\n"
            f"#     --version {chart.version} --namespace {cfg.gpu_stack.namespace} -f dcgm-exporter-values.yaml\n"
            + dump(metrics.dcgm_exporter_values(cfg)))
    return out
