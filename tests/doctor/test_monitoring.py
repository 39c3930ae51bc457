"""The doctor's monitoring layer: its pure check on captured-format output,
and its runner against the stand-in kubectl (the exact commands: the
exporter's pods on the node, one scrape through the API server's pod proxy,
the PrometheusRule)."""

from __future__ import annotations

import json

import pytest

from components.facts.parsing import ParseError
from components.monitoring import metrics
from components.monitoring.rules import prometheus_rule
from tests.doctor import samples
from tests.doctor.fakecli import FakeCli, answer, data, install_on_path, rule
from tests.monitoring.conftest import monitoring_cfg
from tools.doctor import runners
from tools.doctor.model import MonitoringObservation, Output, Unreachable
from tools.doctor.monitoring import check_monitoring, parse_exposition, pods_command, rule_command, scrape_command

CFG = samples.homelab_cfg()
PODS = Output(data("pods-dcgm-exporter.json"))
SCRAPE = data("dcgm-exporter-metrics.txt")
KUBECONFIG = "apiVersion: v1\nkind: Config\n"


def by_name(results):
    return {result.name: result for result in results}


def test_the_scrape_parses_as_the_exporter_writes_it():
    samples_ = parse_exposition(SCRAPE)
    (temperature,) = samples_[metrics.GPU_TEMP]
    assert temperature["Hostname"] == "moody-good" and temperature["gpu"] == "0" and temperature["modelName"] == "Tesla T4"
    assert set(metrics.DCGM_METRICS) <= set(samples_)


def test_parse_exposition_reads_escapes_and_timestamps_and_refuses_other_text():
    found = parse_exposition('# HELP x y\nx{a="q\\"uote",b="back\\\\slash"} 1 1700000000000\nup 1\n')
    assert found == {"x": [{"a": 'q"uote', "b": "back\\slash"}], "up": [{}]}
    with pytest.raises(ParseError, match="line 1"):
        parse_exposition("<html>502 Bad Gateway</html>\n")


def test_a_healthy_exporter_passes_and_the_rules_are_skipped_without_the_operator():
    results = by_name(check_monitoring(MonitoringObservation(PODS, Output(SCRAPE)), CFG))
    assert results["exporter metrics"].status == "pass", results["exporter metrics"]
    assert "nvidia-dcgm-exporter-m8v4d serves all 9 metrics" in results["exporter metrics"].detail
    assert results["alert rules"].status == "skip"


@pytest.mark.parametrize("metric", metrics.DCGM_METRICS)
def test_a_metric_the_dashboard_reads_missing_from_the_scrape_fails(metric):
    scrape = "\n".join(line for line in SCRAPE.splitlines() if not line.startswith(metric + "{"))
    result = by_name(check_monitoring(MonitoringObservation(PODS, Output(scrape)), CFG))["exporter metrics"]
    assert result.status == "fail" and metric in result.detail and result.remedy


def test_metrics_of_another_node_do_not_count():
    scrape = SCRAPE.replace('Hostname="moody-good"', 'Hostname="happy-zebra"')
    result = by_name(check_monitoring(MonitoringObservation(PODS, Output(scrape)), CFG))["exporter metrics"]
    assert result.status == "fail" and "for moody-good" in result.detail


def test_no_exporter_pod_names_the_way_to_get_one_in_each_mode():
    empty = Output(json.dumps({"kind": "List", "items": []}))
    operator = by_name(check_monitoring(MonitoringObservation(empty), CFG))["exporter metrics"]
    assert operator.status == "fail" and "nvidia.com/gpu.deploy.dcgm-exporter" in operator.remedy
    plugin_cfg = samples.homelab_cfg(gpuStack={"mode": "devicePlugin"}, talos={"version": "v1.12.11"})
    plugin = by_name(check_monitoring(MonitoringObservation(empty), plugin_cfg))["exporter metrics"]
    assert plugin.status == "fail" and "dcgm-exporter chart 4.7.0" in plugin.remedy and "app.kubernetes.io/name=dcgm-exporter" in plugin.detail


def test_a_failed_scrape_fails_with_the_pods_logs_to_read():
    result = by_name(check_monitoring(MonitoringObservation(PODS, Output(error="the server is currently unable to handle the request")), CFG))
    assert result["exporter metrics"].status == "fail" and "kubectl logs -n gpu-operator nvidia-dcgm-exporter-m8v4d" in result["exporter metrics"].remedy


def test_the_rules_pass_only_when_every_alert_and_label_is_there():
    cfg = monitoring_cfg()
    document = prometheus_rule(cfg, "homelab")
    ok = by_name(check_monitoring(MonitoringObservation(PODS, Output(SCRAPE), Output(json.dumps(document))), cfg))["alert rules"]
    assert ok.status == "pass" and "all 7 alerts" in ok.detail
    document["spec"]["groups"][0]["rules"].pop()
    lacking = by_name(check_monitoring(MonitoringObservation(PODS, Output(SCRAPE), Output(json.dumps(document))), cfg))["alert rules"]
    assert lacking.status == "fail" and "GpuEncoderSaturated" in lacking.detail
    unlabelled = prometheus_rule(cfg, "homelab")
    unlabelled["metadata"]["labels"] = {}
    result = by_name(check_monitoring(MonitoringObservation(PODS, Output(SCRAPE), Output(json.dumps(unlabelled))), cfg))["alert rules"]
    assert result.status == "fail" and "release" in result.detail
    missing = Output(error='Error from server (NotFound): prometheusrules.monitoring.coreos.com "gpu-node-alerts" not found')
    assert by_name(check_monitoring(MonitoringObservation(PODS, Output(SCRAPE), missing), cfg))["alert rules"].status == "fail"


# -- the runner, against the stand-in kubectl -----------------------------------------


@pytest.fixture
def fake(tmp_path, monkeypatch) -> FakeCli:
    return install_on_path(tmp_path, monkeypatch)


def test_gather_scrapes_the_running_exporter_on_the_node_through_the_api_server(fake: FakeCli):
    cfg = monitoring_cfg()
    assert scrape_command(cfg, "nvidia-dcgm-exporter-m8v4d") == [
        "get", "--raw", "/api/v1/namespaces/gpu-operator/pods/nvidia-dcgm-exporter-m8v4d:9400/proxy/metrics"]
    fake.set_rules("kubectl", [
        rule(pods_command(cfg), answer(data("pods-dcgm-exporter.json"))),
        rule(scrape_command(cfg, "nvidia-dcgm-exporter-m8v4d"), answer(SCRAPE)),
        rule(rule_command(cfg), answer(json.dumps(prometheus_rule(cfg, "homelab")))),
    ])
    observation = runners.gather_monitoring(cfg, runners.Credentials(kubeconfig=KUBECONFIG))
    assert isinstance(observation, MonitoringObservation)
    assert [result.status for result in check_monitoring(observation, cfg)] == ["pass", "pass"]
    assert [call["argv"][2:5] for call in fake.calls("kubectl")] == [
        ["get", "pods", "-n"], ["get", "--raw", "/api/v1/namespaces/gpu-operator/pods/nvidia-dcgm-exporter-m8v4d:9400/proxy/metrics"],
        ["get", "prometheusrules.monitoring.coreos.com", "gpu-node-alerts"]]
    assert all(call["config_mode"] == "0o600" for call in fake.calls("kubectl"))


def test_gather_without_an_exporter_pod_makes_no_scrape(fake: FakeCli):
    fake.set_rules("kubectl", [rule(pods_command(CFG), answer(json.dumps({"apiVersion": "v1", "kind": "List", "items": []})))])
    observation = runners.gather_monitoring(CFG, runners.Credentials(kubeconfig=KUBECONFIG))
    assert isinstance(observation, MonitoringObservation) and observation.scrape is None and observation.rule is None
    assert len(fake.calls("kubectl")) == 1


def test_gather_of_an_unreachable_cluster_is_unreachable(fake: FakeCli):
    refused = answer(stderr="The connection to the server 192.168.8.99:6443 was refused - did you specify the right host or port?\n", rc=1)
    fake.set_rules("kubectl", [rule(pods_command(CFG), refused)])
    observation = runners.gather_monitoring(CFG, runners.Credentials(kubeconfig=KUBECONFIG))
    assert isinstance(observation, Unreachable) and "refused" in observation.reason
