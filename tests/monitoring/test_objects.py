"""The monitoring objects against upstream data: the PrometheusRule against
prometheus-operator's CRD, the dashboard ConfigMap against the Kubernetes
ConfigMap schema and the API server's own limits; every metric a panel or a
rule reads is in the exporter's counters file of every delivery; and both
are written by render and render --flux."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from components.monitoring import dashboard, metrics, rules
from components.monitoring.artifacts import render_artifacts
from tests.conftest import reference
from tests.flux.crds import assert_valid
from tests.monitoring.conftest import monitoring_cfg
from tools.render import _yaml

# What the API server checks beyond the schema (kubernetes pkg/apis/core/validation/validation.go
# ValidateConfigMap: keys IsConfigMapKey, total size at most MaxSecretSize, 1 MiB).
CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
CONFIGMAP_MAX_BYTES = 1024 * 1024
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

COUNTERS = {
    # operator mode: DCGM_EXPORTER_COLLECTORS=/etc/dcgm-exporter/dcp-metrics-included.csv
    "GPU Operator v25.10.1 (exporter 4.4.2-4.7.0)": ("dcgm", "dcp-metrics-included.4.4.2-4.7.0.csv"),
    "GPU Operator v26.7.0 (nearest exporter tag 4.5.3-4.8.2)": ("dcgm", "dcp-metrics-included.4.5.3-4.8.2.csv"),
}


@cache
def configmap_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(reference("kubernetes", "configmap-v1.json").read_text()))


def configmap_problems(document: dict) -> list[str]:
    found = [f"{'.'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
             for error in configmap_validator().iter_errors(document)]
    data = document.get("data") or {}
    found += [f"data key {key!r} is not a ConfigMap key" for key in data if not CONFIGMAP_KEY.match(key)]
    if sum(len(key) + len(value.encode()) for key, value in data.items()) > CONFIGMAP_MAX_BYTES:
        found.append("data is larger than 1 MiB")
    metadata = document.get("metadata") or {}
    if not DNS_LABEL.match(metadata.get("namespace", "")):
        found.append(f"metadata.namespace {metadata.get('namespace')!r}")
    return found


def used_metrics(text: str) -> set[str]:
    return set(re.findall(r"\b(DCGM_FI_[A-Z0-9_]+)\b", text))


def chart_counters() -> set[str]:
    """The dcgm-exporter chart's own list (its metrics-configmap template)."""
    template = reference("dcgm", "chart-4.7.0.metrics-configmap.yaml").read_text()
    block = template.split("{{- else }}", 1)[1].split("{{- end }}", 1)[0]
    return metrics.counters_in_csv(block.split("metrics: |", 1)[1])


def test_the_prometheus_rule_is_valid_for_prometheus_operators_crd():
    for cfg in (monitoring_cfg(), monitoring_cfg(mode="devicePlugin"), monitoring_cfg(timeSlicing={"renameByDefault": True})):
        assert_valid(rules.prometheus_rule(cfg, "homelab"))


def test_the_crd_check_refuses_a_misspelt_rule_field():
    """Guards the check above: it can fail."""
    document = rules.prometheus_rule(monitoring_cfg(), "homelab")
    document["spec"]["groups"][0]["rules"][0]["annotation"] = {"summary": "x"}
    with pytest.raises(AssertionError, match="annotation"):
        assert_valid(document)


def test_the_dashboard_configmap_is_valid_for_kubernetes():
    for cfg in (monitoring_cfg(), monitoring_cfg(monitoring={"dashboardNamespace": "monitoring", "dashboardLabel": "grafana.io/dashboard"})):
        document = dashboard.dashboard_config_map(cfg)
        assert configmap_problems(document) == []
        json.loads(document["data"][dashboard.FILE_NAME])


def test_the_configmap_check_refuses_a_bad_object():
    document = dashboard.dashboard_config_map(monitoring_cfg())
    document["data"] = {"gpu dashboard.json": "x" * (CONFIGMAP_MAX_BYTES + 1)}
    document["metadata"]["label"] = {}
    found = configmap_problems(document)
    assert any("label" in problem for problem in found) and any("ConfigMap key" in problem for problem in found)
    assert "data is larger than 1 MiB" in found


def test_the_sidecar_label_and_namespace_follow_the_config():
    default = dashboard.dashboard_config_map(monitoring_cfg())["metadata"]
    assert default["labels"] == {"grafana_dashboard": "1"} and default["namespace"] == "gpu-operator"


@pytest.mark.parametrize("counters", sorted(COUNTERS))
def test_every_metric_a_panel_or_rule_reads_is_a_default_counter_of_the_operators_exporter(counters):
    enabled = metrics.counters_in_csv(reference(*COUNTERS[counters]).read_text())
    cfg = monitoring_cfg()
    read = used_metrics(dashboard.dashboard_json(cfg)) | used_metrics(json.dumps(rules.rule_groups(cfg, "homelab")))
    assert read == set(metrics.DCGM_METRICS), "metrics.DCGM_METRICS lists what the panels and rules read"
    assert sorted(read - enabled) == [], f"not in {counters}'s default counters: the exporter would not serve them"


def test_every_metric_is_in_the_dcgm_exporter_charts_list_too():
    """Device-plugin mode: NVIDIA's dcgm-exporter chart 4.7.0 mounts its own list."""
    assert sorted(set(metrics.DCGM_METRICS) - chart_counters()) == []


def test_the_counters_check_can_fail():
    enabled = metrics.counters_in_csv(reference(*COUNTERS[sorted(COUNTERS)[0]]).read_text())
    assert "DCGM_FI_DEV_FB_TOTAL" not in enabled, "the default counters have no framebuffer total: read used and free"
    assert "DCGM_FI_DEV_POWER_VIOLATION" not in enabled, "a commented-out counter is not enabled"


def test_the_dashboard_shows_what_a_transcoding_homelab_needs():
    model = dashboard.dashboard_model(monitoring_cfg())
    titles = [panel["title"] for panel in model["panels"] if panel["type"] != "row"]
    assert titles == ["Encoder (NVENC) use", "Decoder (NVDEC) use", "GPU use", "Memory copy use", "Framebuffer used / total",
                      "Temperature", "Power", "XID errors", "Shares requested / advertised", "Shares by pod"]
    exprs = " ".join(target["expr"] for panel in model["panels"] for target in panel.get("targets", []))
    assert 'kube_pod_container_resource_requests{resource="nvidia_com_gpu",unit="integer"' in exprs
    assert 'kube_node_status_allocatable{resource="nvidia_com_gpu",unit="integer"' in exprs
    assert "DCGM_FI_DEV_FB_USED" in exprs and "DCGM_FI_DEV_FB_FREE" in exprs
    assert len({panel["id"] for panel in model["panels"]}) == len(model["panels"])
    temperature = next(panel for panel in model["panels"] if panel["title"] == "Temperature")
    assert temperature["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] == 85


def test_render_writes_the_objects_only_with_the_prometheus_operator():
    on = render_artifacts(monitoring_cfg(), "homelab", _yaml)
    assert sorted(Path(path).name for path in on) == [
        "gpu-alerts-prometheusrule.yaml", "gpu-alerts.rules.yaml", "gpu-dashboard-configmap.yaml", "gpu-dashboard.json"]
    assert yaml.safe_load(on["kubernetes/monitoring/gpu-alerts-prometheusrule.yaml"]) == rules.prometheus_rule(monitoring_cfg(), "homelab")
    off = render_artifacts(monitoring_cfg(prometheusOperator=False), "homelab", _yaml)
    assert list(off) == ["kubernetes/monitoring/gpu-dashboard.json"]
    assert render_artifacts(monitoring_cfg(ownsClusterObjects=False), "homelab", _yaml) == {}


def test_render_in_device_plugin_mode_writes_the_exporter_release_to_install():
    out = render_artifacts(monitoring_cfg(mode="devicePlugin"), "homelab", _yaml)
    text = out["kubernetes/monitoring/dcgm-exporter-values.yaml"]
    assert "--repo https://nvidia.github.io/dcgm-exporter/helm-charts" in text and "--version 4.7.0" in text
    values = yaml.safe_load(text)
    assert values["runtimeClassName"] == "nvidia" and values["serviceMonitor"] == {
        "enabled": True, "additionalLabels": {"release": "kube-prometheus-stack"}}
